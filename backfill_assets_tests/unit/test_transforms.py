"""Small pure transformations on in-memory DataFrames (no Iceberg, no Dagster); the rewrite: test_rewrite."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession

from backfill_assets.contracts.values import payment_rating, to_summary_values
from backfill_assets.transforms.latest import accounts_without_active_row, latest_outside
from backfill_assets_tests.fixtures import ACCOUNTS_ALL, LAYOUT, record
from backfill_assets_tests.reference_model import rating


def frame(spark: SparkSession, rows: list[dict[str, Any]], schema: Any) -> DataFrame:
    return spark.createDataFrame([tuple(r.get(c) for c in schema.fieldNames()) for r in rows], schema)


def test_payment_rating_and_sentinels_match_the_rules(spark: SparkSession) -> None:
    days = [None, -1, 0, 29, 30, 59, 60, 89, 90, 119, 120, 149, 150, 179, 180, 999]
    classes = [None, "1", "01", "S", "2", "02", "B", "3", "03", "D", "4", "04", "L", "5", "05", "M", "X", "s"]
    rows = [(d, c) for d in days for c in classes]
    df = spark.createDataFrame(rows, "d int, c string")
    got = [r[0] for r in df.select(payment_rating(df["d"], df["c"])).collect()]
    assert got == [rating(d, c) for d, c in rows]
    recs = [record(1, "2024-01", acct_bal_am=v) for v in (-2147483647, -214748364, -21474836, -1, -2, 0, None)]
    values = to_summary_values(frame(spark, recs, ACCOUNTS_ALL), LAYOUT).collect()
    assert [r["balance_am"] for r in values] == [None, None, None, None, -2, 0, None]


def test_accounts_without_active_row_after_the_batch(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [(1, "2024-01", None), (1, "2024-02", None), (2, "2024-01", None), (3, "2024-01", "1"), (4, "2024-01", "4")],
        "cons_acct_key bigint, rpt_as_of_mo string, soft_del_cd string",
    )
    records = spark.createDataFrame(
        # 1 deletes one of two active rows; 2 deletes its only one; 3 re-activates; 4 deletes a month without row;
        # 5 is new and only deletes (no rows: not an account the question is about)
        [(1, "2024-02", True), (2, "2024-01", True), (3, "2024-01", False), (4, "2024-03", True), (5, "2024-01", True)],
        "cons_acct_key bigint, rpt_as_of_mo string, is_deleted boolean",
    )
    orphans = accounts_without_active_row(rows, records)
    assert sorted(r[0] for r in orphans.collect()) == [2, 4]


def test_latest_outside_prefers_the_greatest_active_month_then_the_greatest(spark: SparkSession) -> None:
    keys = spark.createDataFrame(
        [
            (1, "2015-06", None),
            (1, "2016-01", "1"),
            (1, "2020-01", None),  # inside the months: not considered
            (2, "2015-06", "1"),
            (2, "2024-06", "4"),
            (3, "2030-01", None),  # not asked for
        ],
        "cons_acct_key bigint, rpt_as_of_mo string, soft_del_cd string",
    )
    accounts = spark.createDataFrame([(1,), (2,)], "cons_acct_key bigint")
    found = latest_outside(keys, accounts, ("2019-01", "2022-12")).collect()
    assert sorted((r[0], r[1]) for r in found) == [(1, "2015-06"), (2, "2024-06")]
