"""The rules of `verify` (docs/spec.md §6) on small in-memory tables built by the reference model."""

from __future__ import annotations

from typing import Any

import pytest
from pyspark.sql import SparkSession

from backfill_assets.transforms import verify as v
from backfill_assets_tests.fixtures import LAYOUT, SUMMARY, frame, record
from backfill_assets_tests.reference_model import ReferenceModel

Rows = dict[tuple[int, str], dict[str, Any]]
MONTHS = [f"2024-{m:02d}" for m in range(1, 13)]


def clean() -> tuple[Rows, dict[int, dict[str, Any]]]:
    """Accounts 1-9 with a year of months; account 2 has a gap (2024-04), account 3 a deleted month (2024-05)."""
    model = ReferenceModel()
    model.deliver(
        record(a, m, acct_bal_am=100 * a + i, days_past_due_ct_4in=40 if i % 3 else 0)
        for a in range(1, 10)
        for i, m in enumerate(MONTHS)
        if (a, m) != (2, "2024-04")
    )
    model.run()
    model.deliver([record(3, "2024-05", soft_del_cd="1")])
    model.run()
    summary = {k: {c: row.get(c) for c in SUMMARY.fieldNames()} for k, row in model.summary().items()}
    return summary, {a: summary[(a, row["rpt_as_of_mo"])] for a, row in model.latest().items()}


def broken(spark: SparkSession, summary: Rows, latest: dict[int, dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """(table, rule name) -> the Problem, of every broken rule."""
    reports = v.verify(
        frame(spark, list(summary.values()), SUMMARY), frame(spark, list(latest.values()), SUMMARY), LAYOUT
    )
    assert [r.table for r in reports] == ["summary", "latest_summary"]
    assert reports[0].rows_read == len(summary) and reports[1].rows_read == len(latest)
    return {(p.table, f"{p.column}: {p.rule}"): p for r in reports for p in r.problems}


def test_a_table_the_reference_model_built_breaks_no_rule(spark: SparkSession) -> None:
    summary, latest = clean()
    assert broken(spark, summary, latest) == {}


def test_history_before_the_first_row_is_not_judged(spark: SparkSession) -> None:
    summary, latest = clean()
    for (a, m), row in summary.items():
        if a == 4:  # loaded from an older system: values before 2024-01 at every position
            shift = MONTHS.index(m) + 1
            row["balance_am_history"] = row["balance_am_history"][:shift] + [7] * (36 - shift)
    latest[4] = summary[(4, "2024-12")]
    assert broken(spark, summary, latest) == {}


def _set(row: dict[str, Any], column: str, position: int, value: Any) -> None:
    row[column] = [*row[column][:position], value, *row[column][position + 1 :]]


@pytest.mark.parametrize(
    ("account", "month", "position", "value", "rule"),
    [
        (1, "2024-06", 2, 999, v.DISAGREES),  # 2024-04 is active with another value
        (5, "2024-06", 2, None, v.MISSING),  # 2024-04 is active with a value
        (3, "2024-08", 3, 999, v.TOMBSTONE),  # 2024-05 is deleted
        (2, "2024-07", 3, 999, v.NO_ROW),  # 2024-04 has no row
    ],
)
def test_each_kind_of_history_corruption_is_found_on_its_row(
    spark: SparkSession, account: int, month: str, position: int, value: Any, rule: str
) -> None:
    summary, latest = clean()
    _set(summary[(account, month)], "balance_am_history", position, value)
    assert {name: (p.rows, p.examples) for (_, name), p in broken(spark, summary, latest).items()} == {
        f"balance_am_history: {rule}": (1, ((account, month),))
    }


def test_row_rules_length_grid_rating_sentinel_and_keys(spark: SparkSession) -> None:
    summary, latest = clean()
    summary[(6, "2024-03")]["past_due_am_history"] = [0] * 35
    summary[(7, "2024-03")]["payment_history_grid"] = "X" * 36
    summary[(8, "2024-03")]["payment_rating_cd"] = "6"
    summary[(9, "2024-12")]["credit_limit_am"] = -1  # the last row: no later row repeats position 0
    _set(summary[(9, "2024-12")], "credit_limit_am_history", 0, -1)
    rows = [*summary.values(), summary[(1, "2024-02")]]
    reports = v.verify(frame(spark, rows, SUMMARY), frame(spark, list(latest.values()), SUMMARY), LAYOUT, ("summary",))
    found = {f"{p.column}: {p.rule}": p.examples for r in reports for p in r.problems}
    assert found == {
        "past_due_am_history: must hold 36 elements (NULL only on a deleted row)": ((6, "2024-03"),),
        "payment_history_grid: must equal the rendering of payment_rating_cd_history": ((7, "2024-03"),),
        "payment_rating_cd: must agree with days_past_due / asset_class_cd": ((8, "2024-03"),),
        "payment_rating_cd_history: position 0 must equal the row's own payment_rating_cd": ((8, "2024-03"),),
        "credit_limit_am: must not hold a sentinel amount": ((9, "2024-12"),),
        "credit_limit_am_history: must not hold a sentinel amount": ((9, "2024-12"),),
        "cons_acct_key, rpt_as_of_mo: key must be unique": ((1, "2024-02"),),
    }


def test_latest_summary_rules(spark: SparkSession) -> None:
    summary, latest = clean()
    latest[1] = summary[(1, "2024-11")]  # not the newest active row
    latest[2] = {**latest[2], "balance_am": 1}  # not equal to its summary row
    del latest[5]  # missing
    latest[42] = {**latest[6], "cons_acct_key": 42}  # no summary rows
    rows = [*latest.values(), summary[(7, "2024-11")]]  # account 7 twice
    reports = v.verify(
        frame(spark, list(summary.values()), SUMMARY), frame(spark, rows, SUMMARY), LAYOUT, ("latest_summary",)
    )
    assert [r.table for r in reports] == ["latest_summary"]
    found = {f"{p.column}: {p.rule}": (p.rows, p.examples) for p in reports[0].problems}
    assert found == {
        f"rpt_as_of_mo: {v.LATEST_NOT_PICKED}": (1, ((1, "2024-11"),)),
        f"*: {v.LATEST_DIFFERS}": (1, ((2, "2024-12"),)),
        f"cons_acct_key: {v.LATEST_MISSING}": (1, ((5, "2024-12"),)),
        f"cons_acct_key: {v.LATEST_ORPHAN}": (1, ((42, "2024-12"),)),
        f"cons_acct_key: {v.LATEST_DUPLICATE}": (2, ((7, "2024-11"), (7, "2024-12"))),
    }
