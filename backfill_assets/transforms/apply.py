"""Combine the patches of all late months onto the summary rows they reach (SPEC §4.2)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from backfill_assets.tables import GRID, HISTORIES, HISTORY_LENGTH, SCALARS, SUMMARY_COLUMNS
from backfill_assets.transforms.months import month_index
from backfill_assets.transforms.values import grid, is_deleted

A = "cons_acct_key"


def _history(h: str, value: str) -> Column:
    """Position i: the patch of month target-i if any, else the old row's, else the base row shifted."""
    return F.expr(
        f"""transform(sequence(0, {HISTORY_LENGTH - 1}), i -> CASE
              WHEN map_contains_key(patch, i) THEN patch[i].{value}
              WHEN old_active THEN old.{h}[i]
              WHEN i >= shift THEN base.{h}[i - shift]
            END)"""
    )


def _rows_as(summary: DataFrame, key: str, month: str, row: str) -> DataFrame:
    """The summary rows as (key, month, struct-of-row), renamed so that two joins can use them."""
    return summary.select(F.col(A).alias(key), F.col("rpt_as_of_mo").alias(month), F.struct(*SUMMARY_COLUMNS).alias(row))


def apply_patches(patches: DataFrame, summary: DataFrame) -> DataFrame:
    """New summary rows for every row a patch reaches, in the summary's column order.

    `summary` holds the old rows of the patched accounts (targets and their base rows). A row that no
    patch reaches is not returned, so it is not rewritten. A deleted month keeps its old content
    with the delete's `soft_del_cd`.
    """
    own = F.first(
        F.when(F.col("position") == 0, F.struct("is_deleted", *SCALARS, "own_row", "base_mo")), ignorenulls=True
    )
    grouped = patches.groupBy(A, "target_mo").agg(
        own.alias("own"),
        F.map_from_entries(F.collect_list(F.struct("position", F.struct(*HISTORIES.values())))).alias("patch"),
        F.max("base_ts").alias("new_base_ts"),
    )
    old = _rows_as(summary, "o_acct", "o_mo", "old")
    base = _rows_as(summary, "b_acct", "b_mo", "base")
    staged = (
        grouped.join(old, (F.col(A) == F.col("o_acct")) & (F.col("target_mo") == F.col("o_mo")), "left")
        .join(
            base,
            (F.col(A) == F.col("b_acct")) & (F.col("own.base_mo") == F.col("b_mo")) & (F.col("own.own_row") != "active"),
            "left",
        )
        .withColumn("old_active", F.col("old").isNotNull() & ~is_deleted(F.col("old.soft_del_cd")))
        .withColumn("shift", month_index("target_mo") - month_index("b_mo"))
        .where(F.col("own").isNotNull() | F.col("old_active"))
    )
    own_deleted = F.coalesce(F.col("own.is_deleted"), F.lit(False))
    has_own = F.col("own").isNotNull()

    def scalar(c: str) -> Column:
        if c == "soft_del_cd":
            return F.when(has_own, F.col("own.soft_del_cd")).otherwise(F.col("old.soft_del_cd"))
        return F.when(has_own & ~own_deleted, F.col(f"own.{c}")).otherwise(F.col(f"old.{c}"))

    histories = {h: F.when(own_deleted, F.col(f"old.{h}")).otherwise(_history(h, v)) for h, v in HISTORIES.items()}
    return staged.select(
        A,
        F.col("target_mo").alias("rpt_as_of_mo"),
        F.col("new_base_ts").alias("base_ts"),
        *[scalar(c).alias(c) for c in SCALARS],
        *[c.alias(h) for h, c in histories.items()],
        grid(F.when(own_deleted, F.col("old.payment_rating_cd_history")).otherwise(_history(
            "payment_rating_cd_history", "payment_rating_cd"))).alias(GRID),
    )


def latest_rows(written: DataFrame, window_rows: DataFrame, latest: DataFrame) -> DataFrame:
    """latest_summary rows that change: per account of `written`, its newest active row, else newest row.

    Candidates are the rows just written, the old rows read for the run (`window_rows`) and the old
    `latest` row. Rows equal to the old latest row are not returned.
    """
    accounts = written.select(A).distinct()
    old_latest = latest.join(accounts, A, "left_semi")
    unchanged = window_rows.join(accounts, A, "left_semi").join(written.select(*[A, "rpt_as_of_mo"]), [A, "rpt_as_of_mo"], "left_anti")
    candidates = (
        written.withColumn("_new", F.lit(True))
        .unionByName(unchanged.withColumn("_new", F.lit(False)))
        .unionByName(
            old_latest.join(written.select(A, "rpt_as_of_mo"), [A, "rpt_as_of_mo"], "left_anti")
            .join(unchanged.select(A, "rpt_as_of_mo"), [A, "rpt_as_of_mo"], "left_anti")
            .withColumn("_new", F.lit(False))
        )
    )
    newest = Window.partitionBy(A).orderBy(is_deleted(F.col("soft_del_cd")).asc(), F.col("rpt_as_of_mo").desc())
    chosen = candidates.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1")
    same_as_before = chosen.join(
        old_latest.select(A, F.col("rpt_as_of_mo").alias("_old_mo")), A, "left"
    ).where(~F.col("_new") & (F.col("rpt_as_of_mo") == F.col("_old_mo")))
    return chosen.join(same_as_before.select(A), A, "left_anti").select(*SUMMARY_COLUMNS)
