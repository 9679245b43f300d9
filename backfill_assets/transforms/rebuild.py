"""Full recompute of `summary` from records that are all applied in one run (docs/spec.md §2.2, §4.2).

Used to build a consistent starting point (generated data sets, initial loads) and as a scalable
cross-check of the incremental path. Each account's months are laid out on a dense timeline (NULL
for months without an active row, 35 NULLs in front); the 36 history positions of a row are then a
slice of that timeline, reversed: one pass per account, no self-join, no lookups per position.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from backfill_assets.contracts.tables import GRID, HISTORIES, HISTORY_LENGTH, SCALARS, SUMMARY, SUMMARY_COLUMNS
from backfill_assets.contracts.values import grid, to_summary_values
from backfill_assets.transforms.classify import winners
from backfill_assets.transforms.latest import latest_months
from backfill_assets.transforms.months import month_index

A = "cons_acct_key"
PAD = HISTORY_LENGTH - 1
# what a month contributes to the rows that reach it: its history values and its base_ts
_TIMELINES = ("base_ts", *dict.fromkeys(HISTORIES.values()))


def _active_months(records: DataFrame) -> DataFrame:
    """Summary values of the winning record of every month that is active (deletes make no row)."""
    values = to_summary_values(winners(records.repartition(A)))
    return values.where(~F.col("is_deleted")).withColumn("idx", month_index("rpt_as_of_mo"))


def _timeline(entries: Column) -> Column:
    """Dense timeline of the slots of month-sorted `entries`: NULL for each missing month, PAD NULLs in front.

    Each entry is preceded by as many NULLs as months are missing before it, so position
    PAD + (idx - first idx) holds the slot of month idx. The one lambda of the rebuild runs once
    per account; per row there is only native slicing (and `grid`).
    """
    null_slot = F.lit(None).cast(StructType([SUMMARY[f] for f in _TIMELINES]))

    def gap_then_slot(e: Column, k: Column) -> Column:
        gap = F.when(k == 0, F.lit(PAD)).otherwise(e["idx"] - entries[k - 1]["idx"] - 1)
        return F.concat(F.array_repeat(null_slot, gap), F.array(e["slot"]))

    return F.flatten(F.transform(entries, gap_then_slot))


def _window(field: str) -> Column:
    """The 36 timeline values of months m … m-35 of the exploded entry (position 0 = month m)."""
    start = F.col("entry.idx") - F.col("first") + 1
    return F.reverse(F.slice(F.col(f"_t_{field}"), start, HISTORY_LENGTH))


def _rebuild(records: DataFrame, latest_only: bool) -> DataFrame:
    """Summary rows of every active month of the records' accounts, or only of each account's latest."""
    months = _active_months(records)
    entry = F.struct(
        F.col("idx"),
        F.struct(*_TIMELINES).alias("slot"),
        F.struct("rpt_as_of_mo", *[c for c in SCALARS if c not in _TIMELINES]).alias("own"),
    )
    accounts = months.groupBy(A).agg(F.sort_array(F.collect_list(entry)).alias("entries"))
    entries = F.col("entries")
    # timelines once per account, in a projection of their own below the explode (not per row)
    laid_out = accounts.select(A, entries, entries[0]["idx"].alias("first"), _timeline(entries).alias("_timeline"))
    per_field = laid_out.select(A, entries, "first", *[F.col("_timeline")[f].alias(f"_t_{f}") for f in _TIMELINES])
    exploded = F.slice(entries, -1, 1) if latest_only else entries
    rows = per_field.select(A, "first", *[f"_t_{f}" for f in _TIMELINES], F.explode(exploded).alias("entry"))
    histories = {h: _window(v) for h, v in HISTORIES.items()}
    own = {c: F.col(f"entry.slot.{c}" if c in _TIMELINES else f"entry.own.{c}") for c in ("rpt_as_of_mo", *SCALARS)}
    columns: dict[str, Column] = {
        A: F.col(A),
        **own,
        "base_ts": F.array_max(_window("base_ts")),
        **histories,
        GRID: grid(histories["payment_rating_cd_history"]),
    }
    return rows.select(*[columns[c].cast(SUMMARY[c].dataType).alias(c) for c in SUMMARY_COLUMNS])


def rebuild_summary(records: DataFrame) -> DataFrame:
    """The `summary` table that applying all of `records` in one run yields (SUMMARY_COLUMNS order and types).

    A month has a row iff its winner is active; `base_ts` of a row is the greatest base_ts of the
    active winners of its months m-35 … m (a delete in a single run never had a row, so never counts).
    Records are partitioned by account once; winners, grouping and explode need no other shuffle.
    """
    return _rebuild(records, latest_only=False)


def rebuild_latest(records: DataFrame) -> DataFrame:
    """`latest_of(rebuild_summary(records))`, building only the latest row of each account.

    After a one-run rebuild every row is active, so the latest row is the one of the greatest month.
    """
    return _rebuild(records, latest_only=True)


def latest_of(summary: DataFrame) -> DataFrame:
    """Per account, its row of the greatest active month, else of the greatest deleted month (docs/spec.md §2.3).

    The choice is made on the key columns alone and the rows are then picked by key, so the wide
    rows are neither sorted nor (when the keys are small enough to broadcast) shuffled.
    """
    keys = latest_months(summary.select(A, "rpt_as_of_mo", "soft_del_cd"))
    return summary.join(keys, [A, "rpt_as_of_mo"], "left_semi").select(*SUMMARY_COLUMNS)
