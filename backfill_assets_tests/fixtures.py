"""What the test modules share (no test module imports another).

* `Lake`: a throw-away lakehouse for one test: its own namespace, a Dagster instance and the reference model;
  `record`, `next_ts`, `random_batch`, `MONTHS` and `spark_jobs` to feed and measure it.
* The hand-written Case III scenarios (`SCENARIOS`, `scenario_history`, `scenario_late`, their accounts).
* Rows of the tables as import reads them (`account_row`, `summary_row`, `frame`).
* Comparing a summary with the reference model (`Record`, `rows_by_key`, `assert_summary_equal`).
* A `backfill-assets run` in its own process, stopped at a fault point and killed (`CliRun`, `prepared`, `snapshots`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from backfill_assets.contracts.layout import DEFAULT_LAYOUT
from backfill_assets.definitions import build_defs
from backfill_assets.resources.lakehouse import Lakehouse, WriteMode
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import RunReport, run_pending
from backfill_assets.transforms.months import month_range
from backfill_assets_tests.reference_model import ReferenceModel, deleted, month_index, month_key

# the hand-written scenarios and most tests use the default layout (docs/spec.md §2)
LAYOUT = DEFAULT_LAYOUT
ACCOUNTS_ALL, SUMMARY, SUMMARY_COLUMNS = LAYOUT.accounts_all, LAYOUT.summary, LAYOUT.summary_columns
HISTORIES, GRID = LAYOUT.history_sources, "payment_history_grid"

_clock = itertools.count(1)
T0 = dt.datetime(2026, 6, 1)  # records of months up to 2026-06 are delivered after their month began


def next_ts() -> dt.datetime:
    """A base_ts later than every one handed out before (base_ts grows with delivery)."""
    return T0 + dt.timedelta(seconds=next(_clock))


def record(
    account: int,
    month: str,
    base_ts: dt.datetime | None = None,
    carried: Mapping[str, Any] | None = None,
    **values: Any,
) -> dict[str, Any]:
    """An accounts_all record; unspecified values are plausible defaults (`carried`: another layout's columns)."""
    row: dict[str, Any] = {
        "cons_acct_key": account,
        "rpt_as_of_mo": month,
        "base_ts": base_ts or next_ts(),
        "insert_ts": None,
        "update_ts": None,
        "soft_del_cd": None,
        "acct_credit_ext_am": 1000,
        "acct_bal_am": 100,
        "past_due_am": 0,
        "actual_pymt_am": 50,
        "days_past_due_ct_4in": 0,
        "asset_class_cd_4in": None,
        "acct_stat_cd": "11",
    }
    unknown = set(values) - set(row)
    assert not unknown, unknown
    row.update(values)
    row.update(carried or {})
    return row


def spark_jobs(spark: SparkSession, run: Callable[[], object]) -> int:
    """How many Spark jobs `run()` starts."""
    group = f"count-{uuid.uuid4().hex}"
    spark.sparkContext.setJobGroup(group, "count jobs")
    try:
        run()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


class Lake:
    """Deliver records, run the real Dagster job, and compare the tables with the reference model."""

    def __init__(
        self,
        spark: SparkSession,
        spark_resource: SparkIceberg,
        quality: DataQuality | None = None,
        write_mode: WriteMode = "merge-on-read",
        layout_file: str = "",
    ) -> None:
        self.spark = spark
        fields = {k: getattr(spark_resource, k) for k in SparkIceberg.model_fields}
        self.resource = SparkIceberg(**{**fields, "namespace": f"t_{uuid.uuid4().hex[:10]}"})
        self.lakehouse = Lakehouse(spark=self.resource, write_mode=write_mode, layout_file=layout_file)
        self.layout = self.lakehouse.layout
        self.defs = build_defs(self.resource, self.lakehouse, quality)
        self.instance = dg.DagsterInstance.ephemeral()
        self.model = ReferenceModel(yaml.safe_load(Path(layout_file).read_text()) if layout_file else None)
        self.resource.session.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.resource.catalog}.{self.resource.namespace}")

    def table(self, name: str) -> str:
        return self.resource.table(name)

    def deliver(self, records: Iterable[dict[str, Any]], to_model: bool = True) -> None:
        """Append records to accounts_all (and, unless they are meant to be refused, to the model)."""
        rows = list(records)
        source = self.layout.accounts_all
        nullable = StructType([StructField(f.name, f.dataType, True) for f in source.fields])  # bad rows too
        df = self.spark.createDataFrame([tuple(r[c] for c in source.fieldNames()) for r in rows], nullable)
        self.spark.sql(self.layout.contracts["accounts_all"].create_sql(self.table("accounts_all")))
        df.writeTo(self.table("accounts_all")).append()
        if to_model:
            self.model.deliver(rows)

    def run(self) -> RunReport:
        report = run_pending(self.defs, self.instance)
        assert report.success, report.lines()
        self.model.run()
        return report

    def apply_each(self, batches: Iterable[list[dict[str, Any]]]) -> set[str]:
        """Deliver and run each batch in turn, comparing with the model after each run; the cases the runs read."""
        cases: set[str] = set()
        for batch in batches:
            self.deliver(batch)
            read = self.run().metadata["classified_accounts"]
            cases |= {c for c in ("I", "II", "III", "IV") if read[f"case_{c}"]}
            self.assert_matches_model()
        return cases

    def try_run(self) -> RunReport:
        """A run that may fail (the model is not advanced)."""
        return run_pending(self.defs, self.instance)

    def rows(self, table: str, tag: str | None = None) -> dict[tuple[int, str], dict[str, Any]]:
        """The table's rows by key, as of `main` or of an Iceberg tag."""
        reader = self.spark.read if tag is None else self.spark.read.option("tag", tag)
        return {
            (r["cons_acct_key"], r["rpt_as_of_mo"]): r.asDict()
            for r in reader.table(self.table(table)).select(*self.layout.summary_columns).collect()
        }

    def snapshot(self, table: str) -> int | None:
        return self.lakehouse.snapshot_id(table)

    def assert_matches_model(self, tag: str | None = None) -> None:
        """docs/spec.md §4.1–4.3: the summary and latest_summary (as of `main` or a tag) equal the full recompute."""
        actual, expected = self.rows("summary", tag), self.model.summary()
        assert sorted(actual) == sorted(expected), _diff_keys(actual, expected)
        for key, want in expected.items():
            got = actual[key]
            if deleted(want["soft_del_cd"]):
                assert got["soft_del_cd"] == want["soft_del_cd"], key
            else:
                assert got == want, _diff_row(key, got, want)
        latest = {a: row for (a, _), row in self.rows("latest_summary", tag).items()}
        want_latest = self.model.latest()
        assert sorted(latest) == sorted(want_latest)
        for a, row in latest.items():
            assert row["rpt_as_of_mo"] == want_latest[a]["rpt_as_of_mo"], a
            assert row == actual[(a, row["rpt_as_of_mo"])], a


def _diff_keys(actual: dict[Any, Any], expected: dict[Any, Any]) -> str:
    return f"missing {sorted(set(expected) - set(actual))[:5]}, unexpected {sorted(set(actual) - set(expected))[:5]}"


def _diff_row(key: Any, got: dict[str, Any], want: dict[str, Any]) -> str:
    cols = [c for c in want if got.get(c) != want[c]]
    return f"{key}: " + "; ".join(f"{c}: got {got.get(c)!r} want {want[c]!r}" for c in cols)


MONTHS = [f"{y}-{m:02d}" for y in (2022, 2023, 2024, 2025) for m in range(1, 13)]


def random_batch(
    rng: random.Random, accounts: range, months: list[str], size: int, layout: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Records of random accounts and months: values, NULLs, sentinels, deletions and tie-broken duplicates
    (with `layout`, a layout file's mapping, also its source columns the default layout lacks)."""
    out = []
    for _ in range(size):
        ts = next_ts()
        carried = carried_values(rng, layout) if layout else {}
        values = {
            "acct_bal_am": rng.choice([None, -1, -2147483647, rng.randint(0, 5000)]),
            "acct_credit_ext_am": rng.choice([None, -214748364, rng.randint(0, 9000)]),
            "past_due_am": rng.choice([None, -21474836, rng.randint(0, 500)]),
            "actual_pymt_am": rng.choice([None, rng.randint(0, 500)]),
            "days_past_due_ct_4in": rng.choice([None, -1, 0, 15, 45, 75, 100, 130, 160, 200]),
            "asset_class_cd_4in": rng.choice([None, "1", "02", "D", "4", "05", "X"]),
            "soft_del_cd": rng.choice([None, None, None, None, "", "0", "1", "4"]),
            "insert_ts": rng.choice([None, ts]),
        }
        out.append(record(rng.choice(accounts), rng.choice(months), ts, carried, **values))
        if rng.random() < 0.1:  # a second version with the same base_ts: tie-breaks decide
            out.append(
                record(
                    out[-1]["cons_acct_key"],
                    out[-1]["rpt_as_of_mo"],
                    ts,
                    carried,
                    **{
                        **values,
                        "acct_bal_am": 7,
                        "insert_ts": ts + dt.timedelta(seconds=rng.choice([-1, 1])),
                        "soft_del_cd": None,
                    },
                )
            )
    return out


def carried_values(rng: random.Random, layout: Mapping[str, Any]) -> dict[str, Any]:
    """Random values of a layout's source columns that `record` does not know, by type: NULL now and then,
    a sentinel for a column with sentinels."""
    defaults = set(record(1, "2024-01", T0))
    out: dict[str, Any] = {}
    for entry in layout["scalars"].values():
        source, kind = entry.get("from"), str(entry.get("type"))
        if source is None or source in defaults:
            continue
        if kind in ("int", "bigint"):
            value: Any = rng.randint(0, 10**6)
        elif kind == "double":
            value = rng.randint(0, 10**6) / 8
        elif kind.startswith("decimal"):
            scale = int(kind.rstrip(")").split(",")[1])
            value = decimal.Decimal(rng.randint(0, 10**5)).scaleb(-scale)
        elif kind == "date":
            value = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 2000))
        elif kind == "timestamp":
            value = T0 - dt.timedelta(seconds=rng.randint(0, 10**7))
        elif kind == "boolean":
            value = rng.random() < 0.5
        else:
            value = rng.choice(["A", "B", "C", "XY"])
        out[source] = rng.choice([None, *entry.get("sentinels", ()), value, value, value])
    return out


# ------------------------------------------------------------------------------ the Case III scenarios

# accounts, one or more per scenario
MULTI, GAP_FILL, CORRECT, CORRECT_LATEST, NULLS, SENTINEL, FAR, DELETE, DELETE_LATEST, TS, TIES = range(1, 12)


def _months(first: str, last: str) -> list[str]:
    return [month_key(i) for i in range(month_index(first), month_index(last) + 1)]


def _history(account: int, first: str, last: str, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One record per month, balance = 100 + month number, so positions are easy to check."""
    return [
        record(account, m, acct_bal_am=100 + month_index(m) - month_index(first))
        for m in _months(first, last)
        if m not in skip
    ]


def scenario_history() -> list[dict[str, Any]]:
    """The records every scenario starts from, applied in a first run."""
    return (
        _history(MULTI, "2023-01", "2024-12")
        + _history(GAP_FILL, "2023-01", "2024-12", skip=("2024-03",))
        + _history(CORRECT, "2023-01", "2024-12")
        + _history(CORRECT_LATEST, "2023-01", "2024-12")
        + _history(NULLS, "2023-01", "2024-12")
        + _history(SENTINEL, "2023-01", "2024-12")
        + _history(FAR, "2022-01", "2022-01")
        + _history(FAR, "2025-06", "2025-08")
        + _history(DELETE, "2023-01", "2024-12")
        + _history(DELETE_LATEST, "2023-01", "2024-12")
        + _history(TS, "2023-01", "2024-12")
        + _history(TIES, "2023-01", "2024-12")
    )


def scenario_late(ts: dict[str, dt.datetime]) -> list[dict[str, Any]]:
    """The late batch: one or more records per scenario, applied in a second run."""
    return [
        record(MULTI, "2024-01", acct_bal_am=9001),
        record(MULTI, "2024-02", acct_bal_am=9002),
        record(MULTI, "2024-06", acct_bal_am=9006),
        record(GAP_FILL, "2024-03", acct_bal_am=5555, days_past_due_ct_4in=95),
        record(CORRECT, "2024-05", acct_bal_am=777, acct_credit_ext_am=2000),
        record(CORRECT_LATEST, "2024-12", acct_bal_am=888),
        record(NULLS, "2024-04", acct_bal_am=None, actual_pymt_am=None, days_past_due_ct_4in=None),
        record(
            SENTINEL,
            "2024-04",
            acct_bal_am=-1,
            acct_credit_ext_am=-2147483647,
            past_due_am=-214748364,
            actual_pymt_am=-21474836,
        ),
        record(FAR, "2021-01", acct_bal_am=4242),
        record(DELETE, "2024-06", soft_del_cd="1"),
        record(DELETE_LATEST, "2024-12", soft_del_cd="4"),
        record(TS, "2023-06", ts["ts"], acct_bal_am=606),
        # two versions with equal base_ts: the greater insert_ts wins; a NULL update_ts loses
        record(TIES, "2024-07", ts["tie"], acct_bal_am=1, insert_ts=dt.datetime(2026, 1, 1)),
        record(TIES, "2024-07", ts["tie"], acct_bal_am=2, insert_ts=dt.datetime(2026, 1, 2)),
        record(TIES, "2024-08", ts["tie"], acct_bal_am=3, insert_ts=dt.datetime(2026, 1, 2), update_ts=None),
        record(
            TIES,
            "2024-08",
            ts["tie"],
            acct_bal_am=4,
            insert_ts=dt.datetime(2026, 1, 2),
            update_ts=dt.datetime(2026, 1, 3),
        ),
    ]


SCENARIOS = {
    "several late months of one account": MULTI,
    "late month without a row": GAP_FILL,
    "correction": CORRECT,
    "correction of the latest month": CORRECT_LATEST,
    "null overwrites a value": NULLS,
    "sentinel amounts": SENTINEL,
    "late month far before later rows": FAR,
    "deletion": DELETE,
    "deletion of the latest month": DELETE_LATEST,
    "base_ts rule": TS,
    "tie-breaks": TIES,
}


# --------------------------------------------------------------------- rows as import and export see them

ROW_TS = dt.datetime(2024, 3, 5, 6, 7, 8, 123456)


def account_row(account: int | None = 1, month: str | None = "2024-01", **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cons_acct_key": account,
        "rpt_as_of_mo": month,
        "base_ts": ROW_TS,
        "insert_ts": None,
        "update_ts": ROW_TS,
        "soft_del_cd": None,
        "acct_credit_ext_am": 1000,
        "acct_bal_am": None,
        "past_due_am": 0,
        "actual_pymt_am": -1,
        "days_past_due_ct_4in": 0,
        "asset_class_cd_4in": None,
        "acct_stat_cd": "11",
    }
    row.update(values)
    return row


def summary_row(account: int | None = 1, month: str | None = "2024-01", **values: Any) -> dict[str, Any]:
    ints = [7, None, *range(34)]
    strings = ["0", None, *["1"] * 34]
    row: dict[str, Any] = {c: None for c in SUMMARY_COLUMNS}
    row.update(
        cons_acct_key=account,
        rpt_as_of_mo=month,
        base_ts=ROW_TS,
        balance_am=7,
        days_past_due=0,
        payment_rating_cd="0",
        **{h: strings if SUMMARY[h].dataType == ArrayType(StringType()) else ints for h in HISTORIES},
    )
    row[GRID] = "0?" + "1" * 34
    row.update(values)
    return row


def frame(spark: SparkSession, rows: list[dict[str, Any]], schema: StructType) -> DataFrame:
    """Rows in `schema`'s columns and types, every column nullable (as a parquet file reads back)."""
    nullable = StructType([StructField(f.name, f.dataType, True) for f in schema.fields])
    return spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in rows], nullable)


# ------------------------------------------------------------------- a summary against the reference model

Record = dict[str, Any]
Rows = dict[tuple[int, str], dict[str, Any]]


def rows_by_key(df: DataFrame) -> Rows:
    return {(r["cons_acct_key"], r["rpt_as_of_mo"]): r.asDict(recursive=True) for r in df.collect()}


def assert_summary_equal(actual: Rows, expected: Rows) -> None:
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        if deleted(want["soft_del_cd"]):
            assert got["soft_del_cd"] == want["soft_del_cd"], key
        else:
            assert got == want, key


# ---------------------------------------------------------------------------------------- killed runs


class CliRun:
    """`backfill-assets run` in its own process (and process group), stopped at a fault point."""

    def __init__(self, lake: Lake, point: str, master: str = "local[2]") -> None:
        spark_config = {
            "master": master,
            "namespace": lake.resource.namespace,
            "warehouse": lake.resource.warehouse,
            "driver_memory": "1g",
            "shuffle_partitions": 2,
            "extra_conf": {"spark.ui.enabled": "false"},
        }
        env = {
            **os.environ,
            "BACKFILL_FAULT_POINT": point,
            "BACKFILL_SPARK_CONFIG": json.dumps(spark_config),
            "PYSPARK_PYTHON": sys.executable,
        }
        env.pop("DAGSTER_HOME", None)
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "backfill-assets"), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, point: str, timeout: float = 600) -> None:
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.process.poll() is None, "".join(seen[-30:])
                continue
            seen.append(line)
            if f"fault point {point} reached" in line:
                return
        raise AssertionError(f"never reached {point}: {''.join(seen[-30:])}")

    def kill(self) -> None:
        """kill -9 of the run's process and its Spark JVM."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(60)


def prepared(spark: SparkSession, spark_resource: SparkIceberg) -> Lake:
    """Three accounts summarised, then a late batch waiting: a correction, a deletion, a forward month."""
    lake = Lake(spark, spark_resource)
    lake.deliver(record(a, m, acct_bal_am=10 * a) for a in (1, 2, 3) for m in month_range("2024-01", "2024-06"))
    lake.run()
    lake.deliver([record(1, "2024-03", acct_bal_am=7), record(2, "2024-02", soft_del_cd="1"), record(3, "2024-07")])
    return lake


def snapshots(lake: Lake) -> tuple[int | None, int | None]:
    return lake.snapshot("summary"), lake.snapshot("latest_summary")
