"""`latest_summary` in the corners a run's month range does not see (docs/spec.md §2.3, §4.3 and §4's last rule).

A run reads summary rows only within its month range (and the rows late records take their history
from), but `latest_summary` is a per-account fact: when a run deletes every active row it sees of
an account, the new latest row may lie 36 or more months away, before or after the range. Every
late batch below keeps its months within 2019-01 … 2019-04, so that the run covers 2019-01 … 2022-03
and the rows that decide the latest lie outside it. Each scenario owns its account.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import RunReport
from backfill_assets_tests.fixtures import Lake, record

# accounts
FAR_ACTIVE = 1  # its latest month is deleted; its only other active row is 45 months before the range
FAR_DELETED = 2  # its last active month is deleted; its greatest deleted row lies 64 months later
NO_ROW_BELOW_LATEST = 3  # a delete of a month that never had a row, 62 months before its latest
BYSTANDER = 4  # an active account the late batch leaves alone
NO_ROW_IN_RANGE = 5  # a delete of a month that never had a row, its latest inside the run's range


def delete(account: int, month: str) -> dict[str, Any]:
    return record(account, month, soft_del_cd="1")


@dataclass
class Phases:
    lake: Lake
    latest_before: dict[tuple[int, str], dict[str, Any]]
    latest_after: dict[tuple[int, str], dict[str, Any]]
    corner_run: RunReport


@pytest.fixture(scope="module")
def phases(spark: SparkSession, spark_resource: SparkIceberg) -> Phases:
    lake = Lake(spark, spark_resource)
    lake.deliver(
        [
            record(FAR_ACTIVE, "2015-06", acct_bal_am=1506),
            record(FAR_ACTIVE, "2019-03", acct_bal_am=1903),
            record(FAR_DELETED, "2019-02", acct_bal_am=1902),
            record(FAR_DELETED, "2024-06", acct_bal_am=2406),
            record(NO_ROW_BELOW_LATEST, "2020-06", acct_bal_am=2006),
            record(NO_ROW_BELOW_LATEST, "2024-06", acct_bal_am=2406),
            record(BYSTANDER, "2019-04", acct_bal_am=1904),
            record(NO_ROW_IN_RANGE, "2019-05", acct_bal_am=1905),
            record(NO_ROW_IN_RANGE, "2019-06", acct_bal_am=1906),
        ]
    )
    lake.run()
    # FAR_DELETED's newest month is deleted: its latest falls back 64 months, to 2019-02
    lake.deliver([delete(FAR_DELETED, "2024-06")])
    lake.run()
    latest_before = lake.rows("latest_summary")
    lake.deliver(
        [
            delete(FAR_ACTIVE, "2019-03"),
            delete(FAR_DELETED, "2019-02"),
            delete(NO_ROW_BELOW_LATEST, "2019-04"),
            record(BYSTANDER, "2019-01", acct_bal_am=1901),
        ]
    )
    corner_run = lake.run()
    return Phases(lake, latest_before, lake.rows("latest_summary"), corner_run)


def latest_month(rows: dict[tuple[int, str], dict[str, Any]], account: int) -> str:
    (month,) = [m for a, m in rows if a == account]
    return month


def test_the_late_batch_runs_over_a_narrow_range(phases: Phases) -> None:
    assert phases.corner_run.partitions == ("2019-01", "2022-03")  # 35 months after 2019-04


def test_deleting_the_newest_month_falls_back_to_a_far_earlier_active_row(phases: Phases) -> None:
    assert latest_month(phases.latest_before, FAR_DELETED) == "2019-02"  # 64 months back, after the range
    assert latest_month(phases.latest_after, FAR_ACTIVE) == "2015-06"  # 45 months back, before the range
    row = phases.latest_after[(FAR_ACTIVE, "2015-06")]
    assert row["soft_del_cd"] is None and row["balance_am"] == 1506


def test_deleting_the_last_active_month_falls_back_to_the_greatest_deleted_row(phases: Phases) -> None:
    assert latest_month(phases.latest_after, FAR_DELETED) == "2024-06"
    assert phases.latest_after[(FAR_DELETED, "2024-06")]["soft_del_cd"] == "1"


def test_a_delete_of_a_month_without_row_leaves_the_latest_row_alone(phases: Phases) -> None:
    key = (NO_ROW_BELOW_LATEST, "2024-06")
    assert latest_month(phases.latest_after, NO_ROW_BELOW_LATEST) == "2024-06"
    assert phases.latest_after[key] == phases.latest_before[key]


def test_every_table_equals_the_model(phases: Phases) -> None:
    phases.lake.assert_matches_model()


def test_a_run_whose_only_record_deletes_a_month_without_row_writes_nothing(phases: Phases) -> None:
    """Inside the range too: the latest row (2019-06) must not be rewritten with the same content."""
    lake = phases.lake
    before = {t: lake.snapshot(t) for t in ("summary", "latest_summary")}
    lake.deliver([delete(NO_ROW_IN_RANGE, "2019-01")])
    report = lake.run()
    assert report.partitions == ("2019-01", "2021-12")
    assert report.metadata["summary_backfilled"]["latest_rows_written"] == 0
    assert {t: lake.snapshot(t) for t in before} == before
    lake.assert_matches_model()


@pytest.mark.parametrize("seed", [11])
def test_random_deletions_in_narrow_ranges_match_reference(
    spark: SparkSession, spark_resource: SparkIceberg, seed: int
) -> None:
    """Histories in clusters years apart; each late batch lies within six months and mostly deletes."""
    rng = random.Random(seed)
    lake = Lake(spark, spark_resource)
    months = [f"{y}-{m:02d}" for y in range(2015, 2026) for m in range(1, 13)]
    accounts = range(1, 9)
    history = [
        record(a, months[start + i], acct_bal_am=rng.randint(0, 999))
        for a in accounts
        for start in rng.sample(range(0, len(months) - 4, 4), 3)
        for i in range(rng.randint(1, 4))
    ]
    lake.deliver(history)
    lake.run()
    for _ in range(4):
        start = months.index(rng.choice(history)["rpt_as_of_mo"])  # a window where some account has rows
        window = months[max(start - 2, 0) : start + 4]
        batch = [
            record(a, rng.choice(window), soft_del_cd=rng.choice(["1", "4", "1", None]), acct_bal_am=rng.randint(0, 9))
            for a in accounts
            for _ in range(rng.randint(0, 3))
        ]
        lake.deliver(batch)
        lake.run()
        lake.assert_matches_model()
