"""`backfill-assets verify` and the `summary_verified` asset check (docs/spec.md §6) on a real audited.

One warehouse for the module: the reference model's summary of a year of 15 accounts is imported, one
real run applies a late batch (a deletion, a correction), the audit finds nothing; then each kind of
corruption is written into an account of its own with Spark SQL, and one audit is judged by the tests.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from backfill_assets import cli
from backfill_assets.contracts.validation import Report
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import RunReport
from backfill_assets.transforms import verify as v
from backfill_assets.verify_check import VERIFY_CHECK, VERIFY_CHECK_KEY
from backfill_assets_tests.fixtures import LAYOUT, SUMMARY, Lake, frame, next_ts, record
from backfill_assets_tests.reference_model import ReferenceModel

MONTHS = [f"2024-{m:02d}" for m in range(1, 13)]
ACCOUNTS = range(1, 16)
OLDER = 4  # its rows carry history from an older system, before its first row
ORPHAN = 99


def _history() -> list[dict[str, Any]]:
    """A year per account, account 2 without 2024-04; ratings vary so that the grid is not constant."""
    return [
        record(a, m, acct_bal_am=100 * a + i, days_past_due_ct_4in=40 if i % 3 else 0)
        for a in ACCOUNTS
        for i, m in enumerate(MONTHS)
        if (a, m) != (2, "2024-04")
    ]


def _older_system(rows: dict[tuple[int, str], dict[str, Any]]) -> None:
    for (a, m), row in rows.items():
        if a == OLDER:
            shift = MONTHS.index(m) + 1
            row["balance_am_history"] = row["balance_am_history"][:shift] + [7] * (36 - shift)


@dataclass
class Cli:
    code: int
    out: str


@dataclass
class Warehouse:
    lake: Lake
    run: RunReport
    clean: Cli
    corrupt: list[Report]

    def cli(self, *argv: str) -> Cli:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main([*argv], spark=self.lake.resource)
        return Cli(code, out.getvalue())

    def audit(self) -> list[Report]:
        lake = self.lake
        return v.verify(lake.spark.table(lake.table("summary")), lake.spark.table(lake.table("latest_summary")), LAYOUT)


def _set(column: str, position: int, value: str) -> str:
    return f"transform({column}, (x, i) -> IF(i = {position}, {value}, x))"


def _update(lake: Lake, table: str, changes: dict[str, list[tuple[int, str, str]]]) -> None:
    """One UPDATE of several rows: column -> [(account, month, new value)]."""
    keys = {(a, m) for rows in changes.values() for a, m, _ in rows}
    where = " OR ".join(f"(cons_acct_key = {a} AND rpt_as_of_mo = '{m}')" for a, m in sorted(keys))
    sets = ", ".join(
        f"{column} = CASE "
        + " ".join(f"WHEN cons_acct_key = {a} AND rpt_as_of_mo = '{m}' THEN {value}" for a, m, value in rows)
        + f" ELSE {column} END"
        for column, rows in changes.items()
    )
    lake.spark.sql(f"UPDATE {lake.table(table)} SET {sets} WHERE {where}")


def _corrupt(lake: Lake) -> None:
    """Each kind of corruption in an account of its own (8 and 9 in their last row, which no later row repeats)."""
    history = "balance_am_history"
    rating_and_sentinel = {
        "payment_rating_cd": [(8, "2024-12", "'6'")],
        "payment_rating_cd_history": [(8, "2024-12", _set("payment_rating_cd_history", 0, "'6'"))],
        "payment_history_grid": [(8, "2024-12", "concat('6', substr(payment_history_grid, 2))")],
        "credit_limit_am": [(9, "2024-12", "-1")],
        "credit_limit_am_history": [(9, "2024-12", _set("credit_limit_am_history", 0, "-1"))],
    }
    _update(
        lake,
        "summary",
        {
            **rating_and_sentinel,
            history: [
                (1, "2024-06", _set(history, 2, "999")),  # 2024-04 holds another value
                (5, "2024-06", _set(history, 2, "NULL")),  # 2024-04 holds a value
                (3, "2024-08", _set(history, 3, "999")),  # 2024-05 is deleted
                (2, "2024-07", _set(history, 3, "999")),  # 2024-04 has no row
            ],
            "past_due_am_history": [(6, "2024-03", "slice(past_due_am_history, 1, 35)")],
            "payment_history_grid": [
                (7, "2024-03", "repeat('X', 36)"),
                *rating_and_sentinel["payment_history_grid"],
            ],
        },
    )
    _update(lake, "latest_summary", {**rating_and_sentinel, "balance_am": [(12, "2024-12", "1")]})
    summary, latest = lake.spark.table(lake.table("summary")), lake.table("latest_summary")
    summary.where("cons_acct_key = 10 AND rpt_as_of_mo = '2024-02'").writeTo(lake.table("summary")).append()
    lake.spark.sql(f"DELETE FROM {latest} WHERE cons_acct_key IN (11, 13)")
    older = summary.where("cons_acct_key IN (11, 15) AND rpt_as_of_mo = '2024-11'")  # not the newest row
    orphan = lake.spark.table(latest).where("cons_acct_key = 14").withColumn("cons_acct_key", F.lit(ORPHAN))
    older.unionByName(orphan).writeTo(latest).append()


@pytest.fixture(scope="module")
def audited(spark: SparkSession, spark_resource: SparkIceberg) -> Warehouse:
    lake = Lake(spark, spark_resource)
    history = _history()
    lake.deliver(history)
    imported = ReferenceModel()
    imported.deliver(history)
    imported.run()
    rows = {k: {c: r.get(c) for c in SUMMARY.fieldNames()} for k, r in imported.summary().items()}
    _older_system(rows)
    latest = [rows[(a, r["rpt_as_of_mo"])] for a, r in imported.latest().items()]
    lake.lakehouse.ensure_tables()
    frame(spark, list(rows.values()), SUMMARY).writeTo(lake.table("summary")).append()
    frame(spark, latest, SUMMARY).writeTo(lake.table("latest_summary")).append()
    lake.lakehouse.reset_watermark()
    lake.model.run()
    # the late batch, applied by one real run: a deletion (a tombstone for account 3) and a correction
    lake.deliver([record(3, "2024-05", next_ts(), soft_del_cd="1"), record(1, "2024-03", acct_bal_am=5)])
    run = lake.run()
    w = Warehouse(lake, run, Cli(0, ""), [])
    w.clean = w.cli("verify")
    _corrupt(lake)
    w.corrupt = w.audit()
    return w


def _broken(reports: list[Report]) -> dict[tuple[str, str], tuple[int | None, tuple[Any, ...]]]:
    return {(p.table, f"{p.column}: {p.rule}"): (p.rows, p.examples) for r in reports for p in r.problems}


def test_a_clean_warehouse_breaks_no_rule_and_verify_exits_0(audited: Warehouse) -> None:
    assert audited.run.metadata["summary_backfilled"]["summary_rows_written"] > 0
    assert audited.clean.code == 0, audited.clean.out
    assert audited.clean.out.splitlines() == [
        "summary: 179 rows checked, every rule holds",
        "latest_summary: 15 rows checked, every rule holds",
    ]


def test_history_from_an_older_system_is_not_reported(audited: Warehouse) -> None:
    older = audited.lake.spark.table(audited.lake.table("summary")).where(f"cons_acct_key = {OLDER}")
    assert all(row["balance_am_history"][-1] == 7 for row in older.collect())
    assert not [k for _, (_, keys) in _broken(audited.corrupt).items() for k in keys if k[0] == OLDER]


def test_each_history_corruption_is_found_with_its_rule_count_and_key(audited: Warehouse) -> None:
    broken = _broken(audited.corrupt)
    for account, month, rule in [
        (1, "2024-06", v.DISAGREES),
        (5, "2024-06", v.MISSING),
        (3, "2024-08", v.TOMBSTONE),
        (2, "2024-07", v.NO_ROW),
    ]:
        assert broken[("summary", f"balance_am_history: {rule}")] == (1, ((account, month),)), rule


def test_row_rules_and_duplicate_keys_are_found(audited: Warehouse) -> None:
    broken = _broken(audited.corrupt)
    assert {k: val for k, val in broken.items() if k[0] == "summary" and not k[1].startswith("balance_am_history")} == {
        ("summary", "past_due_am_history: must hold 36 elements (NULL only on a deleted row)"): (1, ((6, "2024-03"),)),
        ("summary", "payment_history_grid: must equal the rendering of payment_rating_cd_history"): (
            1,
            ((7, "2024-03"),),
        ),
        ("summary", "payment_rating_cd: must agree with days_past_due / asset_class_cd"): (1, ((8, "2024-12"),)),
        ("summary", "credit_limit_am: must not hold a sentinel amount"): (1, ((9, "2024-12"),)),
        ("summary", "credit_limit_am_history: must not hold a sentinel amount"): (1, ((9, "2024-12"),)),
        ("summary", "cons_acct_key, rpt_as_of_mo: key must be unique"): (2, ((10, "2024-02"),)),
    }


def test_latest_summary_corruptions_are_found(audited: Warehouse) -> None:
    latest = {rule: val for (table, rule), val in _broken(audited.corrupt).items() if table == "latest_summary"}
    assert latest == {
        "payment_rating_cd: must agree with days_past_due / asset_class_cd": (1, ((8, "2024-12"),)),
        "credit_limit_am: must not hold a sentinel amount": (1, ((9, "2024-12"),)),
        "credit_limit_am_history: must not hold a sentinel amount": (1, ((9, "2024-12"),)),
        f"rpt_as_of_mo: {v.LATEST_NOT_PICKED}": (1, ((11, "2024-11"),)),
        f"*: {v.LATEST_DIFFERS}": (1, ((12, "2024-12"),)),
        f"cons_acct_key: {v.LATEST_MISSING}": (1, ((13, "2024-12"),)),
        f"cons_acct_key: {v.LATEST_ORPHAN}": (1, ((ORPHAN, "2024-12"),)),
        f"cons_acct_key: {v.LATEST_DUPLICATE}": (2, ((15, "2024-11"), (15, "2024-12"))),
    }


def test_verify_prints_each_broken_rule_per_table_and_exits_1(audited: Warehouse) -> None:
    result = audited.cli("verify")
    assert result.code == 1
    assert "summary: 180 rows checked, 10 rules broken" in result.out
    assert "latest_summary: 16 rows checked, 8 rules broken" in result.out
    assert f"  summary: balance_am_history: {v.TOMBSTONE}: 1 row, e.g. (3, 2024-08)" in result.out
    assert f"  latest_summary: cons_acct_key: {v.LATEST_DUPLICATE}: 2 rows, e.g. (15, 2024-11), (15, 2024-12)" in (
        result.out
    )


def test_verify_json_of_one_table(audited: Warehouse) -> None:
    result = audited.cli("verify", "--table", "latest_summary", "--json")
    assert result.code == 1
    document = json.loads(result.out)
    assert document["rows_checked"] == 16
    assert {b["table"] for b in document["broken"]} == {"latest_summary"}
    assert {
        "table": "latest_summary",
        "rule": f"cons_acct_key: {v.LATEST_MISSING}",
        "rows": 1,
        "examples": [[13, "2024-12"]],
    } in (document["broken"])
    assert all(set(b) == {"table", "rule", "rows", "examples"} for b in document["broken"])


def test_backfill_job_runs_do_not_include_the_audit_check(audited: Warehouse) -> None:
    checks = audited.run.checks
    assert "summary_backfilled:summary_rows_valid" in checks
    assert f"summary_backfilled:{VERIFY_CHECK}" not in checks


def test_the_asset_check_on_demand_warns_with_the_broken_rules(audited: Warehouse) -> None:
    lake = audited.lake
    job = dg.define_asset_job("verify_on_demand", selection=dg.AssetSelection.checks(VERIFY_CHECK_KEY))
    defs = dg.Definitions.merge(lake.defs, dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("verify_on_demand").execute_in_process(instance=lake.instance)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == VERIFY_CHECK and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["rows_read"].value == 180 + 16
    problems = evaluation.metadata["problems"].value
    assert "| WARN | summary | balance_am_history | " + v.NO_ROW + " | 1 |" in problems
    assert "(13, 2024-12)" in problems
