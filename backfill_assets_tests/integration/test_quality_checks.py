"""Data-quality asset checks: a corrupt stored table stops the run and leaves summary and latest_summary
on their snapshots; corrupt histories of rows the run rewrites come out repaired; good data passes every
check. Bad source records are rejected with a warning and the run goes on: test_rejects.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.spark import SparkIceberg, concurrently
from backfill_assets.runner import RunReport
from backfill_assets_tests.fixtures import Lake, record

MONTHS = [f"2024-{m:02d}" for m in range(1, 7)]
TABLES = ("summary", "latest_summary", "accounts_all", "backfill_state", "backfill_rejects")


@pytest.fixture(scope="module")
def lake(spark: SparkSession, spark_resource: SparkIceberg) -> Iterator[Lake]:
    """Three accounts with six months of history, applied; then one late record of account 1 waits.

    No share limit on rejects: beside that one record, one bad record is half the batch.
    """
    lake = Lake(spark, spark_resource, DataQuality(max_rejected_share=1.0))
    lake.deliver(record(a, m, days_past_due_ct_4in=30 * a) for a in (1, 2, 3) for m in MONTHS)
    lake.first_report = lake.run()  # type: ignore[attr-defined]
    lake.deliver([record(1, "2024-03", acct_bal_am=999)])
    yield lake


@pytest.fixture()
def restored(lake: Lake) -> Iterator[Lake]:
    """Whatever a test does to the tables (and the watermark) is rolled back afterwards (Iceberg snapshots)."""
    before = {t: lake.snapshot(t) for t in TABLES}
    yield lake
    lake.lakehouse.rollback(before)


def _fails(lake: Lake, *expected: str) -> RunReport:
    """Run; it must fail naming every `expected` text, and leave summary and latest_summary as they were."""
    before = {t: lake.snapshot(t) for t in ("summary", "latest_summary")}
    report = lake.try_run()
    assert not report.success, report.lines()
    for text in expected:
        assert text in report.error, report.error
    assert {t: lake.snapshot(t) for t in before} == before
    return report


def test_good_data_passes_every_check(lake: Lake) -> None:
    report: RunReport = lake.first_report  # type: ignore[attr-defined]
    assert len(report.checks) == 11  # 3 on classified_accounts, 1 per intermediate asset, 4 on summary_backfilled
    for name, evaluation in report.checks.items():
        assert evaluation.passed, (name, evaluation.description)
        assert evaluation.metadata["errors"].value == 0 and "problems" not in evaluation.metadata, name
    rows_read = {name.split(":")[1]: e.metadata["rows_read"].value for name, e in report.checks.items()}
    assert rows_read["source_records_valid"] == 18  # every record, nothing else
    written = report.metadata["summary_backfilled"]["summary_rows_written"]
    assert rows_read["summary_rows_valid"] == written == 18  # what was committed was checked first


def _sql(lake: Lake, statement: str) -> None:
    lake.spark.sql(statement.format(summary=lake.table("summary"), latest=lake.table("latest_summary")))


WHERE = "WHERE cons_acct_key = 1 AND rpt_as_of_mo = '2024-04'"
BASE = "WHERE cons_acct_key = 1 AND rpt_as_of_mo = '2024-03'"  # the late record's own row: its older history
W, AGREES, LATEST = (
    "summary_backfilled:summary_window_valid",
    "summary_backfilled:latest_summary_agrees",
    "classified_accounts:latest_summary_valid",
)
# corruption, the check that must fail, what its message must say
SUMMARY_CASES: dict[str, tuple[str, str, list[str]]] = {
    "duplicate summary key": (
        f"INSERT INTO {{summary}} SELECT * FROM {{summary}} {WHERE}",
        W,
        ["summary: column cons_acct_key, rpt_as_of_mo: key must be unique", "cons_acct_key=1, rpt_as_of_mo='2024-04'"],
    ),
    "short history array of the base row": (
        f"UPDATE {{summary}} SET balance_am_history = slice(balance_am_history, 1, 35) {BASE}",
        W,
        ["summary: column balance_am_history: must hold 36 elements", "cons_acct_key=1, rpt_as_of_mo='2024-03'"],
    ),
    "grid of the base row not the rendering": (
        f"UPDATE {{summary}} SET payment_history_grid = concat('6', substring(payment_history_grid, 2)) {BASE}",
        W,
        ["summary: column payment_history_grid: must equal the rendering of payment_rating_cd_history"],
    ),
    "rating disagrees": (
        f"UPDATE {{summary}} SET payment_rating_cd = '6' {WHERE}",
        W,
        ["summary: column payment_rating_cd: must agree with days_past_due", "rpt_as_of_mo='2024-04'"],
    ),
    "sentinel left in summary": (
        f"UPDATE {{summary}} SET balance_am = -2147483647 {WHERE}",
        W,
        ["summary: column balance_am: must not hold a sentinel amount", "cons_acct_key=1, rpt_as_of_mo='2024-04'"],
    ),
    "latest disagrees": (
        "UPDATE {latest} SET balance_am = 12345 WHERE cons_acct_key = 1",
        AGREES,
        [
            "latest_summary: column balance_am: must equal the newest active summary row of its account",
            "cons_acct_key=1, rpt_as_of_mo='2024-06'",
        ],
    ),
    "duplicate latest row": (
        "INSERT INTO {latest} SELECT * FROM {latest} WHERE cons_acct_key = 1",
        LATEST,
        ["latest_summary: column cons_acct_key: key must be unique", "cons_acct_key=1"],
    ),
}


@pytest.mark.parametrize("case", SUMMARY_CASES)
def test_bad_summary_window_stops_the_run(restored: Lake, case: str) -> None:
    statement, check, expected = SUMMARY_CASES[case]
    _sql(restored, statement)
    report = _fails(restored, check.split(":")[1], *expected)
    assert [name for name, e in report.checks.items() if not e.passed] == [check]
    assert all(not name.endswith("rows_valid") for name in report.checks)  # stopped before computing writes


# a row the late record (2024-03) rewrites -> how its stored histories are corrupted
CORRUPTIONS = {
    "2024-04": "balance_am_history = slice(balance_am_history, 1, 35)",
    "2024-05": "payment_history_grid = concat('6', substring(payment_history_grid, 2))",
    "2024-06": "balance_am_history = transform(balance_am_history, x -> 7)",
}


@pytest.fixture(scope="module")
def repaired(lake: Lake) -> tuple[RunReport, dict[tuple[int, str], dict[str, Any]]]:
    """One run over rows whose stored histories are corrupt, one way each; the rows after it; rolled back at once."""
    before = {t: lake.snapshot(t) for t in TABLES}
    for month, corruption in CORRUPTIONS.items():
        _sql(lake, f"UPDATE {{summary}} SET {corruption} WHERE cons_acct_key = 1 AND rpt_as_of_mo = '{month}'")
    report = lake.try_run()
    rows = lake.rows("summary")
    lake.lakehouse.rollback(before)
    return report, rows


@pytest.mark.parametrize("month", CORRUPTIONS)
def test_corrupt_histories_of_a_row_the_run_rewrites_come_out_repaired(
    repaired: tuple[RunReport, dict[tuple[int, str], dict[str, Any]]], lake: Lake, month: str
) -> None:
    """The run rebuilds a rewritten row's arrays without reading them (docs/spec.md §4.2): bad ones are replaced."""
    report, rows = repaired
    assert report.success, report.lines()
    assert rows[(1, month)] == lake.model.summary()[(1, month)]


def test_after_the_refusals_the_next_run_finishes_the_job(lake: Lake) -> None:
    """Every refused (or rolled back) run left the tables and the watermark alone: the waiting record is applied now."""
    report = lake.run()
    assert report.metadata["summary_backfilled"]["summary_rows_written"] == 4  # 2024-03 … 2024-06 of account 1
    lake.assert_matches_model()


def test_doubtful_records_warn_and_do_not_stop_the_run(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    lake = Lake(spark, spark_resource)
    lake.deliver([record(1, "2024-01"), record(1, "2024-02", days_past_due_ct_4in=-1, asset_class_cd_4in="X")])
    report = lake.run()
    check = report.checks["classified_accounts:source_records_valid"]
    assert not check.passed and check.severity.value == "WARN"
    assert "asset_class_cd_4in: should give a payment rating" in (check.description or "")
    assert any("WARN" in line for line in report.lines())
    lake.assert_matches_model()


def test_independent_checks_are_evaluated_at_once_and_reported_in_order() -> None:
    barrier = threading.Barrier(2, timeout=10)  # each check waits for the other: one after the other would time out

    def check(n: int) -> int:
        barrier.wait()
        return n

    assert concurrently(lambda: check(1), lambda: check(2)) == [1, 2]

    def broken() -> int:
        raise ValueError("a check that cannot be evaluated")

    with pytest.raises(ValueError, match="cannot be evaluated"):
        concurrently(lambda: 1, broken)
