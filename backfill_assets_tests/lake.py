"""A throw-away lakehouse for one test: its own namespace, a Dagster instance and the reference model."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg
from pyspark.sql import SparkSession
from pyspark.sql.types import StructField, StructType

from backfill_assets.contracts.tables import ACCOUNTS_ALL, CONTRACTS, SUMMARY_COLUMNS
from backfill_assets.definitions import build_defs
from backfill_assets.resources.lakehouse import Lakehouse, WriteMode
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import RunReport, run_pending
from backfill_assets_tests.reference_model import ReferenceModel, deleted

_clock = itertools.count(1)
T0 = dt.datetime(2026, 1, 1)


def next_ts() -> dt.datetime:
    """A base_ts later than every one handed out before (base_ts grows with delivery)."""
    return T0 + dt.timedelta(seconds=next(_clock))


def record(account: int, month: str, base_ts: dt.datetime | None = None, **values: Any) -> dict[str, Any]:
    """An accounts_all record; unspecified values are plausible defaults."""
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
    ) -> None:
        self.spark = spark
        fields = {k: getattr(spark_resource, k) for k in SparkIceberg.model_fields}
        self.resource = SparkIceberg(**{**fields, "namespace": f"t_{uuid.uuid4().hex[:10]}"})
        self.lakehouse = Lakehouse(spark=self.resource, write_mode=write_mode)
        self.defs = build_defs(self.resource, self.lakehouse, quality)
        self.instance = dg.DagsterInstance.ephemeral()
        self.model = ReferenceModel()
        self.resource.session.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.resource.catalog}.{self.resource.namespace}")

    def table(self, name: str) -> str:
        return self.resource.table(name)

    def deliver(self, records: Iterable[dict[str, Any]], to_model: bool = True) -> None:
        """Append records to accounts_all (and, unless they are meant to be refused, to the model)."""
        rows = list(records)
        nullable = StructType([StructField(f.name, f.dataType, True) for f in ACCOUNTS_ALL.fields])  # bad rows too
        df = self.spark.createDataFrame([tuple(r[c] for c in ACCOUNTS_ALL.fieldNames()) for r in rows], nullable)
        self.spark.sql(CONTRACTS["accounts_all"].create_sql(self.table("accounts_all")))
        df.writeTo(self.table("accounts_all")).append()
        if to_model:
            self.model.deliver(rows)

    def run(self) -> RunReport:
        report = run_pending(self.defs, self.instance)
        assert report.success, report.lines()
        self.model.run()
        return report

    def try_run(self) -> RunReport:
        """A run that may fail (the model is not advanced)."""
        return run_pending(self.defs, self.instance)

    def rows(self, table: str) -> dict[tuple[int, str], dict[str, Any]]:
        return {
            (r["cons_acct_key"], r["rpt_as_of_mo"]): r.asDict()
            for r in self.spark.table(self.table(table)).select(*SUMMARY_COLUMNS).collect()
        }

    def snapshot(self, table: str) -> int | None:
        return self.lakehouse.snapshot_id(table)

    def assert_matches_model(self) -> None:
        """SPEC §4.1–4.3: the summary and latest_summary equal the full recompute."""
        actual, expected = self.rows("summary"), self.model.summary()
        assert sorted(actual) == sorted(expected), _diff_keys(actual, expected)
        for key, want in expected.items():
            got = actual[key]
            if deleted(want["soft_del_cd"]):
                assert got["soft_del_cd"] == want["soft_del_cd"], key
            else:
                assert got == want, _diff_row(key, got, want)
        latest = {a: row for (a, _), row in self.rows("latest_summary").items()}
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


def random_batch(rng: random.Random, accounts: range, months: list[str], size: int) -> list[dict[str, Any]]:
    """Records of random accounts and months: values, NULLs, sentinels, deletions and tie-broken duplicates."""
    out = []
    for _ in range(size):
        ts = next_ts()
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
        out.append(record(rng.choice(accounts), rng.choice(months), ts, **values))
        if rng.random() < 0.1:  # a second version with the same base_ts: tie-breaks decide
            out.append(
                record(
                    out[-1]["cons_acct_key"],
                    out[-1]["rpt_as_of_mo"],
                    ts,
                    **{
                        **values,
                        "acct_bal_am": 7,
                        "insert_ts": ts + dt.timedelta(seconds=rng.choice([-1, 1])),
                        "soft_del_cd": None,
                    },
                )
            )
    return out
