"""Full recompute of `summary` from records that are all applied in one run (SPEC §2.2, §4.2).

Used to build a consistent starting point (generated data sets, initial loads) and as a scalable
cross-check of the incremental path. Each account's months are laid out on a dense timeline (NULL
for months without an active row, 35 NULLs in front); the 36 history positions of a row are then a
slice of that timeline, reversed: one pass per account, no self-join, no lookups per position.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from backfill_assets.tables import GRID, HISTORIES, HISTORY_LENGTH, SCALARS, SUMMARY, SUMMARY_COLUMNS
from backfill_assets.transforms.classify import winners
from backfill_assets.transforms.months import month_index
from backfill_assets.transforms.values import grid, is_deleted, to_summary_values

A = "cons_acct_key"
PAD = HISTORY_LENGTH - 1
# what a month contributes to the rows that reach it: its history values and its base_ts
_SLOT_FIELDS = ("base_ts", *dict.fromkeys(HISTORIES.values()))


def _active_months(records: DataFrame) -> DataFrame:
    """Summary values of the winning record of every month that is active (deletes make no row)."""
    values = to_summary_values(winners(records))
    return values.where(~F.col("is_deleted")).withColumn("idx", month_index("rpt_as_of_mo"))


def _timeline(entries: Column) -> Column:
    """Dense timeline of the slots of month-sorted `entries`: NULL for every missing month, 35 in front.

    Each entry is preceded by as many NULLs as months are missing before it, so timeline position
    PAD + (idx - first idx) holds the entry of month idx.
    """
    slot_type = f"struct<{', '.join(f'{f}: {SUMMARY[f].dataType.simpleString()}' for f in _SLOT_FIELDS)}>"
    null_slot = F.lit(None).cast(slot_type)

    def gap_then_slot(e: Column, k: Column) -> Column:
        gap = F.when(k == 0, F.lit(PAD)).otherwise(e["idx"] - entries[k - 1]["idx"] - 1)
        return F.concat(F.array_repeat(null_slot, gap), F.array(e["slot"]))

    return F.flatten(F.transform(entries, gap_then_slot))


def _rows_of_account(entries: Column) -> Column:
    """Per entry: its own values and its 36-month window of slots (position 0 = its own month)."""
    timeline = _timeline(entries)
    first = entries[0]["idx"]
    return F.transform(
        entries,
        lambda e: F.struct(
            e["own"].alias("own"),
            F.reverse(F.slice(timeline, e["idx"] - first + 1, HISTORY_LENGTH)).alias("window"),
        ),
    )


def _history(window: Column, value: str) -> Column:
    return F.transform(window, lambda s: s[value])


def rebuild_summary(records: DataFrame) -> DataFrame:
    """The `summary` table that applying all of `records` in one run yields (SUMMARY_COLUMNS order and types).

    A month has a row iff its winner is active; `base_ts` of a row is the greatest base_ts of the
    active winners of its months m-35 … m (a delete in a single run never had a row, so never counts).
    """
    months = _active_months(records)
    entry = F.struct(
        F.col("idx").alias("idx"),
        F.struct(*_SLOT_FIELDS).alias("slot"),
        F.struct("rpt_as_of_mo", *SCALARS).alias("own"),
    )
    accounts = months.groupBy(A).agg(F.array_sort(F.collect_list(entry)).alias("entries"))
    rows = accounts.select(A, F.inline(_rows_of_account(F.col("entries"))))
    window, own = F.col("window"), F.col("own")
    histories = {h: _history(window, v) for h, v in HISTORIES.items()}
    columns: dict[str, Column] = {
        A: F.col(A),
        "rpt_as_of_mo": own["rpt_as_of_mo"],
        "base_ts": F.array_max(_history(window, "base_ts")),
        **{c: own[c] for c in SCALARS},
        **histories,
        GRID: grid(histories["payment_rating_cd_history"]),
    }
    return rows.select(*[columns[c].cast(SUMMARY[c].dataType).alias(c) for c in SUMMARY_COLUMNS])


def latest_of(summary: DataFrame) -> DataFrame:
    """Per account, its row of the greatest active month, else of the greatest deleted month (SPEC §2.3)."""
    newest = Window.partitionBy(A).orderBy(is_deleted(F.col("soft_del_cd")).asc(), F.col("rpt_as_of_mo").desc())
    return summary.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1").select(*SUMMARY_COLUMNS)
