"""Hand-written Case III scenarios (issue: late records correct all eight history columns).

All scenarios share one lakehouse and three real runs of the Dagster job (history, late batch,
re-delivery); each scenario owns its accounts, and each test states what its rows must hold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import RunReport
from backfill_assets_tests.fixtures import (
    CORRECT,
    CORRECT_LATEST,
    DELETE,
    DELETE_LATEST,
    FAR,
    GAP_FILL,
    MULTI,
    NULLS,
    SENTINEL,
    TIES,
    TS,
    Lake,
    next_ts,
    record,
    scenario_history,
    scenario_late,
)

Rows = dict[tuple[int, str], dict[str, Any]]


@dataclass
class Phases:
    lake: Lake
    after_history: Rows
    after_late: Rows
    latest_after_late: Rows
    after_redelivery: Rows
    late_report: RunReport
    late_ts: dict[str, dt.datetime]


@pytest.fixture(scope="module")
def phases(spark: SparkSession, spark_resource: SparkIceberg) -> Phases:
    lake = Lake(spark, spark_resource)
    lake.deliver(scenario_history())
    lake.run()
    after_history = lake.rows("summary")
    ts = {name: next_ts() for name in ("ts", "tie")}
    lake.deliver(scenario_late(ts))
    late_report = lake.run()
    lake.assert_matches_model()
    after_late, latest_after_late = lake.rows("summary"), lake.rows("latest_summary")
    lake.deliver([record(DELETE, "2024-06", acct_bal_am=6060)])
    lake.run()
    lake.assert_matches_model()
    return Phases(lake, after_history, after_late, latest_after_late, lake.rows("summary"), late_report, ts)


def balances(rows: Rows, account: int, month: str) -> list[int | None]:
    return rows[(account, month)]["balance_am_history"]


def test_late_batch_is_reported_as_case_iii(phases: Phases) -> None:
    meta = phases.late_report.metadata["classified_accounts"]
    assert meta["case_III"] == 14 and meta["case_I"] == 0 and meta["case_II"] == 0
    assert phases.late_report.metadata["joined_windows"]["case_III"] == 14  # no delete of a missing month
    assert any(
        line.split() == ["case", "III", "records", "read", "14", "applied", "14", "skipped", "0"]
        for line in phases.late_report.lines()
    )


def test_several_late_months_of_one_account_patch_every_later_row(phases: Phases) -> None:
    h = balances(phases.after_late, MULTI, "2024-12")
    assert (h[11], h[10], h[6]) == (9001, 9002, 9006)  # 2024-01, 2024-02, 2024-06 seen from 2024-12
    assert h[5] == 100 + 18 and h[12] == 100 + 11  # untouched neighbours
    assert balances(phases.after_late, MULTI, "2024-02")[:2] == [9002, 9001]
    assert balances(phases.after_late, MULTI, "2023-12") == balances(phases.after_history, MULTI, "2023-12")


def test_late_month_without_row_creates_it_with_inherited_history(phases: Phases) -> None:
    assert (GAP_FILL, "2024-03") not in phases.after_history
    row = phases.after_late[(GAP_FILL, "2024-03")]
    assert row["balance_am_history"][:3] == [5555, 100 + 13, 100 + 12]
    assert row["payment_rating_cd"] == "3" and row["payment_history_grid"][0] == "3"
    later = phases.after_late[(GAP_FILL, "2024-10")]
    assert later["balance_am_history"][7] == 5555 and later["days_past_due_history"][7] == 95
    assert later["payment_history_grid"][7] == "3"


def test_correction_changes_all_history_columns_at_the_right_position(phases: Phases) -> None:
    for month, pos in (("2024-05", 0), ("2024-09", 4), ("2024-12", 7)):
        row = phases.after_late[(CORRECT, month)]
        assert row["balance_am_history"][pos] == 777 and row["credit_limit_am_history"][pos] == 2000
    assert phases.after_late[(CORRECT, "2024-05")]["credit_limit_am"] == 2000
    assert phases.after_late[(CORRECT, "2024-04")] == phases.after_history[(CORRECT, "2024-04")]


def test_correction_of_the_latest_month_updates_latest_summary(phases: Phases) -> None:
    row = phases.latest_after_late[(CORRECT_LATEST, "2024-12")]
    assert row["balance_am"] == 888 and row["balance_am_history"][0] == 888


def test_null_overwrites_a_value(phases: Phases) -> None:
    for month, pos in (("2024-04", 0), ("2024-12", 8)):
        row = phases.after_late[(NULLS, month)]
        assert row["balance_am_history"][pos] is None and row["actual_payment_am_history"][pos] is None
        assert row["days_past_due_history"][pos] is None and row["payment_history_grid"][pos] == "?"
        assert row["past_due_am_history"][pos] == 0  # a value the record kept


def test_sentinel_amounts_become_null(phases: Phases) -> None:
    row = phases.after_late[(SENTINEL, "2024-06")]
    for h in ("balance_am_history", "credit_limit_am_history", "past_due_am_history", "actual_payment_am_history"):
        assert row[h][2] is None, h


def test_late_month_far_before_later_rows_changes_only_its_own_row(phases: Phases) -> None:
    row = phases.after_late[(FAR, "2021-01")]
    assert row["balance_am_history"][0] == 4242 and row["balance_am_history"][1:] == [None] * 35
    assert balances(phases.after_late, FAR, "2022-01")[12] == 4242  # 12 months later: within reach
    for m in ("2025-06", "2025-07", "2025-08"):  # 53+ months later: out of reach, not rewritten
        assert phases.after_late[(FAR, m)] == phases.after_history[(FAR, m)]


def test_deletion_keeps_a_flagged_row_and_blanks_later_positions(phases: Phases) -> None:
    assert phases.after_late[(DELETE, "2024-06")]["soft_del_cd"] == "1"
    assert balances(phases.after_late, DELETE, "2024-12")[6] is None
    assert phases.after_late[(DELETE, "2024-12")]["payment_history_grid"][6] == "?"


def test_deleting_the_latest_month_falls_back_to_newest_active_row(phases: Phases) -> None:
    assert phases.after_late[(DELETE_LATEST, "2024-12")]["soft_del_cd"] == "4"
    assert (DELETE_LATEST, "2024-11") in phases.latest_after_late
    assert (DELETE_LATEST, "2024-12") not in phases.latest_after_late


def test_redelivery_reactivates_a_deleted_month(phases: Phases) -> None:
    row = phases.after_redelivery[(DELETE, "2024-06")]
    assert row["soft_del_cd"] is None and row["balance_am_history"][:2] == [6060, 100 + 16]
    assert balances(phases.after_redelivery, DELETE, "2024-12")[6] == 6060


def test_base_ts_is_the_newest_counting_record_in_the_window(phases: Phases) -> None:
    ts = phases.late_ts["ts"]
    assert phases.after_late[(TS, "2023-06")]["base_ts"] == ts
    assert phases.after_late[(TS, "2024-12")]["base_ts"] == ts
    assert phases.after_late[(TS, "2023-05")]["base_ts"] < ts


def test_duplicate_versions_are_decided_by_tie_breaks(phases: Phases) -> None:
    assert phases.after_late[(TIES, "2024-07")]["balance_am"] == 2
    assert phases.after_late[(TIES, "2024-08")]["balance_am"] == 4
