"""`validate_table` against docs/spec.md §2: what is refused, accepted (and converted), and what the message says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, ShortType, TimestampNTZType

from backfill_assets.contracts.conform import ValidationError, check_table, validate_table
from backfill_assets_tests.fixtures import ACCOUNTS_ALL, LAYOUT, SUMMARY, account_row, frame, spark_jobs, summary_row


def accounts(spark: SparkSession, *rows: dict[str, Any]) -> DataFrame:
    return frame(spark, list(rows) or [account_row()], ACCOUNTS_ALL)


def summaries(spark: SparkSession, *rows: dict[str, Any]) -> DataFrame:
    return frame(spark, list(rows) or [summary_row()], SUMMARY)


def messages(df: DataFrame, table: str) -> list[str]:
    return [p.message for p in check_table(df, table, LAYOUT).problems]


def test_good_frames_pass_and_keep_every_value(spark: SparkSession) -> None:
    for table, df, schema in (
        ("accounts_all", accounts(spark, account_row(1), account_row(2, "2023-12")), ACCOUNTS_ALL),
        ("summary", summaries(spark, summary_row(1), summary_row(1, "2024-02")), SUMMARY),
        ("latest_summary", summaries(spark, summary_row(1), summary_row(2)), SUMMARY),
    ):
        out = validate_table(df, table, LAYOUT)
        assert [(f.name, f.dataType) for f in out.schema] == [(f.name, f.dataType) for f in schema]
        assert sorted(out.collect()) == sorted(df.collect())


def test_extra_and_reordered_columns_are_fine(spark: SparkSession) -> None:
    df = accounts(spark).withColumn("source_system", F.lit("X"))
    shuffled = df.select(*reversed(df.columns))
    out = validate_table(shuffled, "accounts_all", LAYOUT)
    assert out.columns == ACCOUNTS_ALL.fieldNames()
    assert out.collect() == accounts(spark).collect()


def test_lossless_widenings_are_cast_to_spec_types(spark: SparkSession) -> None:
    """int keys, smallint amounts and arrays, and a timestamp without zone (read as UTC) are accepted."""
    df = (
        summaries(spark)
        .withColumn("cons_acct_key", F.col("cons_acct_key").cast("int"))
        .withColumn("balance_am", F.col("balance_am").cast("smallint"))
        .withColumn("balance_am_history", F.col("balance_am_history").cast(ArrayType(ShortType())))
        .withColumn("base_ts", F.col("base_ts").cast(TimestampNTZType()))
    )
    out = validate_table(df, "summary", LAYOUT)
    assert [(f.name, f.dataType) for f in out.schema] == [(f.name, f.dataType) for f in SUMMARY]
    assert out.collect() == summaries(spark).collect()


@pytest.mark.parametrize(
    ("column", "cast", "table"),
    [
        ("base_ts", "string", "accounts_all"),  # a string where a timestamp is required
        ("acct_bal_am", "bigint", "accounts_all"),  # narrowing: could overflow
        ("acct_bal_am", "double", "accounts_all"),
        ("cons_acct_key", "string", "summary"),
        ("rpt_as_of_mo", "date", "summary"),
        ("balance_am_history", "array<bigint>", "summary"),
        ("payment_rating_cd_history", "string", "latest_summary"),
    ],
)
def test_types_that_do_not_fit_are_refused(spark: SparkSession, column: str, cast: str, table: str) -> None:
    base = accounts(spark) if table == "accounts_all" else summaries(spark)
    if cast == "date":
        df = base.withColumn(column, F.lit(dt.date(2024, 1, 1)))
    elif cast == "string" and column.endswith("_history"):
        df = base.withColumn(column, F.concat_ws(",", column))
    else:
        df = base.withColumn(column, F.col(column).cast(cast))
    (message,) = messages(df, table)
    assert message.startswith(f"{table}: column {column}: type ")
    assert "does not fit" in message
    with pytest.raises(ValidationError, match=column):
        validate_table(df, table, LAYOUT)


def test_missing_columns_are_all_named(spark: SparkSession) -> None:
    df = summaries(spark).drop("balance_am_history", "base_ts")
    got = messages(df, "summary")
    assert got == [
        "summary: column base_ts: missing (contract type timestamp)",
        "summary: column balance_am_history: missing (contract type array<int>)",
    ]


def test_null_keys_are_refused_with_an_example_key(spark: SparkSession) -> None:
    df = accounts(
        spark,
        account_row(5, "2024-02"),
        account_row(None, "2024-03"),
        account_row(3, None),
        account_row(4, "2024-01", base_ts=None),
        account_row(2, "2024-01", base_ts=None),
    )
    assert messages(df, "accounts_all") == [
        "accounts_all: column cons_acct_key: must not be NULL (1 row, e.g. cons_acct_key=NULL, rpt_as_of_mo='2024-03')",
        "accounts_all: column rpt_as_of_mo: must not be NULL (1 row, e.g. cons_acct_key=3, rpt_as_of_mo=NULL)",
        "accounts_all: column base_ts: must not be NULL (2 rows, e.g. cons_acct_key=2, rpt_as_of_mo='2024-01')",
    ]


def test_summary_base_ts_may_be_null(spark: SparkSession) -> None:
    assert messages(summaries(spark, summary_row(base_ts=None)), "summary") == []


@pytest.mark.parametrize("month", ["2024-13", "202401", "2024-00", "2024-1", " 2024-01", "2024-01-01", "24-01"])
def test_malformed_months_are_refused(spark: SparkSession, month: str) -> None:
    for table, df in (
        ("accounts_all", accounts(spark, account_row(1), account_row(9, month))),
        ("summary", summaries(spark, summary_row(1), summary_row(9, month))),
    ):
        (message,) = messages(df, table)
        assert message == (
            f"{table}: column rpt_as_of_mo: must be a month 'YYYY-MM' with month 01-12"
            f" (1 row, e.g. cons_acct_key=9, rpt_as_of_mo={month!r})"
        )


def test_history_arrays_must_hold_36_positions(spark: SparkSession) -> None:
    short = [1] * 35
    df = summaries(
        spark,
        summary_row(1, "2024-01"),
        summary_row(2, "2024-02", balance_am_history=short),
        summary_row(3, "2024-03", balance_am_history=[*short, 1, 1]),
        summary_row(4, "2024-04", past_due_am_history=None),  # active row: NULL array refused
        summary_row(5, "2024-05", past_due_am_history=None, soft_del_cd="4"),  # deleted: unspecified
        summary_row(6, "2024-06", payment_history_grid="0" * 35),
    )
    assert messages(df, "summary") == [
        "summary: column balance_am_history: must hold 36 elements (NULL only on a deleted row)"
        " (2 rows, e.g. cons_acct_key=2, rpt_as_of_mo='2024-02')",
        "summary: column past_due_am_history: must hold 36 elements (NULL only on a deleted row)"
        " (1 row, e.g. cons_acct_key=4, rpt_as_of_mo='2024-04')",
        "summary: column payment_history_grid: must hold 36 characters (NULL only on a deleted row)"
        " (1 row, e.g. cons_acct_key=6, rpt_as_of_mo='2024-06')",
    ]


def test_duplicate_keys_are_refused(spark: SparkSession) -> None:
    df = summaries(spark, summary_row(2, "2024-01"), summary_row(1, "2024-02"), summary_row(1, "2024-02"))
    assert messages(df, "summary") == [
        "summary: column cons_acct_key, rpt_as_of_mo: key must be unique"
        " (1 duplicated key, e.g. cons_acct_key=1, rpt_as_of_mo='2024-02')"
    ]
    # latest_summary: one row per account, whatever the months
    df = summaries(spark, summary_row(2, "2024-01"), summary_row(2, "2024-02"), summary_row(3, "2024-02"))
    assert messages(df, "latest_summary") == [
        "latest_summary: column cons_acct_key: key must be unique"
        " (1 duplicated key, e.g. cons_acct_key=2, rpt_as_of_mo='2024-01')"
    ]
    # accounts_all keeps every version of a month
    assert messages(accounts(spark, account_row(1), account_row(1)), "accounts_all") == []


def test_a_check_costs_one_aggregation_examples_included(spark: SparkSession) -> None:
    """Every rule is counted in one aggregation query, which also finds the example keys of the broken
    rules (AQE may run its shuffle stages as jobs of their own, so the baseline is a plain aggregation of
    the same shape); only latest_summary, unique per account, pays a second query for the examples of
    broken rules (struct minima, sorted), so that its clean check does not."""
    good = accounts(spark, account_row(1), account_row(2)).cache()
    bad = accounts(spark, account_row(None, "2024-13", base_ts=None), account_row(1, None)).cache()
    good.count(), bad.count()
    one_pass = spark_jobs(spark, lambda: good.agg(F.count(F.lit(1))).first())
    problems: list[Any] = []
    assert spark_jobs(spark, lambda: problems.extend(check_table(good, "accounts_all", LAYOUT).problems)) == one_pass
    assert problems == []
    assert spark_jobs(spark, lambda: problems.extend(check_table(bad, "accounts_all", LAYOUT).problems)) == one_pass
    assert [p.reject for p in problems] == ["null_key", "bad_month"]  # each record under the first rule it breaks
    assert [p.example for p in problems] == [(None, "2024-13"), (1, None)]
    clean = summaries(spark, summary_row(1, "2024-01"), summary_row(1, "2024-02")).cache()
    broken = summaries(spark, summary_row(1, "202401", balance_am_history=[1]), summary_row(1, "202401")).cache()
    clean.count(), broken.count()
    keys = clean.groupBy("cons_acct_key", "rpt_as_of_mo")
    one_pass = spark_jobs(spark, lambda: keys.count().agg(F.count("*")).first())
    problems.clear()
    assert spark_jobs(spark, lambda: problems.extend(check_table(clean, "summary", LAYOUT).problems)) == one_pass
    assert problems == []
    assert spark_jobs(spark, lambda: problems.extend(check_table(broken, "summary", LAYOUT).problems)) == one_pass
    assert {p.column for p in problems} == {"rpt_as_of_mo", "balance_am_history", "cons_acct_key, rpt_as_of_mo"}
    assert {p.example for p in problems} == {(1, "202401")}
    latest = summaries(spark, summary_row(1, "2024-01"), summary_row(2, "2024-02")).cache()
    twice = summaries(spark, summary_row(1, "2024-01"), summary_row(1, "2024-02")).cache()
    latest.count(), twice.count()
    one_pass = spark_jobs(spark, lambda: latest.groupBy("cons_acct_key").count().agg(F.count("*")).first())
    problems.clear()
    assert (
        spark_jobs(spark, lambda: problems.extend(check_table(latest, "latest_summary", LAYOUT).problems)) == one_pass
    )
    assert problems == []
    assert spark_jobs(spark, lambda: check_table(twice, "latest_summary", LAYOUT)) == 2 * one_pass


def test_example_keys_are_the_least_and_greatest_offending_keys(spark: SparkSession) -> None:
    """Per rule, the smallest and greatest offending keys of each month in Spark's order (a NULL account
    first): found from accounts within a month, they are the keys a struct minimum would give."""
    short = [1]
    rows = [summary_row(a, m, balance_am_history=short) for a, m in ((7, "2024-02"), (3, "2024-02"), (9, "2024-01"))]
    rows += [summary_row(None, "2024-03", balance_am_history=short), summary_row(5, "2024-03")]
    problems = check_table(summaries(spark, *rows), "summary", LAYOUT).problems
    [history] = [p for p in problems if p.column == "balance_am_history"]
    assert history.rows == 4
    assert history.examples == ((None, "2024-03"), (3, "2024-02"), (7, "2024-02"))
    [key] = [p for p in problems if p.column == "cons_acct_key"]
    assert key.examples == ((None, "2024-03"),)


def test_schema_problems_cost_no_job(spark: SparkSession) -> None:
    df = accounts(spark).drop("base_ts")
    assert spark_jobs(spark, lambda: check_table(df, "accounts_all", LAYOUT)) == 0


def test_unknown_table(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        check_table(accounts(spark), "accounts", LAYOUT)
