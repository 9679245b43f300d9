"""`rebuild_summary` and `latest_of` against the plain-Python reference model."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from pyspark.sql import SparkSession

from backfill_assets.transforms.rebuild import latest_of, rebuild_summary
from backfill_assets_tests.fixtures import (
    ACCOUNTS_ALL,
    LAYOUT,
    SUMMARY,
    SUMMARY_COLUMNS,
    Record,
    assert_summary_equal,
    rows_by_key,
)
from backfill_assets_tests.reference_model import ReferenceModel, month_key

Rows = dict[tuple[int, str], dict[str, Any]]
T0 = dt.datetime(2024, 1, 1)
AMOUNTS = ("acct_credit_ext_am", "acct_bal_am", "past_due_am", "actual_pymt_am")
DAYS = (None, 0, 0, 12, 30, 61, 95, 120, 151, 180, 365, -1, -1, -7)
ASSET_CLASSES = (None, "1", "01", "S", "2", "02", "B", "3", "D", "04", "L", "5", "M", "X", "")
DELETE_CODES = (None, None, None, "", "0", "1", "4")


def _amount(rnd: random.Random) -> int | None:
    return rnd.choice((None, -2147483647, -214748364, -21474836, -1, 0, rnd.randint(1, 90_000)))


def _record(rnd: random.Random, account: int, month: str, base_ts: dt.datetime) -> Record:
    def maybe_ts() -> dt.datetime | None:
        return rnd.choice((None, T0 + dt.timedelta(minutes=rnd.randint(0, 3))))

    return {
        "cons_acct_key": account,
        "rpt_as_of_mo": month,
        "base_ts": base_ts,
        "insert_ts": maybe_ts(),
        "update_ts": maybe_ts(),
        "soft_del_cd": rnd.choice(DELETE_CODES),
        **{c: _amount(rnd) for c in AMOUNTS},
        "days_past_due_ct_4in": rnd.choice(DAYS),
        "asset_class_cd_4in": rnd.choice(ASSET_CLASSES),
        "acct_stat_cd": rnd.choice((None, "11", "13", "71", "97")),
    }


def random_records(seed: int, accounts: int = 12, span: int = 50) -> list[Record]:
    """Gappy months over `span` months, several versions per month (few distinct base_ts: tie-breaks)."""
    rnd = random.Random(seed)
    first = 2020 * 12
    out: list[Record] = []
    for account in range(1, accounts + 1):
        months = rnd.sample(range(span), rnd.randint(1, span // 2))
        for m in months:
            for _ in range(rnd.choice((1, 1, 2, 3))):
                base_ts = T0 + dt.timedelta(hours=rnd.randint(0, 2))
                out.append(_record(rnd, account, month_key(first + m), base_ts))
    return _unique_versions(out)


def _unique_versions(records: list[Record]) -> list[Record]:
    """Drop exact version ties (same base_ts, insert_ts, update_ts): their winner is not defined."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for r in records:
        version = (r["cons_acct_key"], r["rpt_as_of_mo"], r["base_ts"], r["insert_ts"], r["update_ts"])
        if version not in seen:
            seen.add(version)
            out.append(r)
    return out


def expected_summary(records: list[Record]) -> Rows:
    model = ReferenceModel()
    model.deliver(records)
    model.run()
    return model.summary()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_rebuild_equals_reference_model(spark: SparkSession, seed: int) -> None:
    records = random_records(seed)
    actual = rebuild_summary(spark.createDataFrame(records, ACCOUNTS_ALL), LAYOUT)
    assert tuple(actual.columns) == SUMMARY_COLUMNS
    assert [f.dataType for f in actual.schema] == [f.dataType for f in SUMMARY]
    assert_summary_equal(rows_by_key(actual), expected_summary(records))


def test_rebuild_windows_across_long_gaps_and_year_ends(spark: SparkSession) -> None:
    """Months 35 apart still meet; 36 apart do not; a deleted winner makes no row and hides its value."""
    rnd = random.Random(7)
    months = ["2019-12", "2020-01", "2022-11", "2022-12", "2025-12"]
    records = [_record(rnd, 9, m, T0 + dt.timedelta(days=i)) | {"soft_del_cd": None} for i, m in enumerate(months)]
    records.append(_record(rnd, 9, "2022-12", T0 + dt.timedelta(days=30)) | {"soft_del_cd": "4"})
    actual = rows_by_key(rebuild_summary(spark.createDataFrame(records, ACCOUNTS_ALL), LAYOUT))
    assert_summary_equal(actual, expected_summary(records))
    assert (9, "2022-12") not in actual
    assert actual[(9, "2022-11")]["base_ts"] == T0 + dt.timedelta(days=2)


def test_rebuild_of_nothing_is_empty(spark: SparkSession) -> None:
    assert rebuild_summary(spark.createDataFrame([], ACCOUNTS_ALL), LAYOUT).count() == 0


def test_latest_of_prefers_newest_active_then_newest_deleted(spark: SparkSession) -> None:
    def row(account: int, month: str, code: str | None) -> dict[str, Any]:
        key = {"cons_acct_key": account, "rpt_as_of_mo": month, "soft_del_cd": code}
        return dict.fromkeys(SUMMARY_COLUMNS) | key

    rows = [
        row(1, "2024-01", None),
        row(1, "2024-03", "1"),
        row(1, "2024-02", "0"),
        row(2, "2024-01", "4"),
        row(2, "2024-05", "1"),
        row(3, "2023-12", ""),
    ]
    latest = latest_of(spark.createDataFrame(rows, SUMMARY))
    got = {r["cons_acct_key"]: (r["rpt_as_of_mo"], r["soft_del_cd"]) for r in latest.collect()}
    assert got == {1: ("2024-02", "0"), 2: ("2024-05", "1"), 3: ("2023-12", "")}
    assert tuple(latest.columns) == SUMMARY_COLUMNS


def test_latest_of_rebuild_matches_reference_model(spark: SparkSession) -> None:
    records = random_records(11)
    model = ReferenceModel()
    model.deliver(records)
    model.run()
    latest = latest_of(rebuild_summary(spark.createDataFrame(records, ACCOUNTS_ALL), LAYOUT))
    got = {r["cons_acct_key"]: r.asDict(recursive=True) for r in latest.collect()}
    assert got == model.latest()
