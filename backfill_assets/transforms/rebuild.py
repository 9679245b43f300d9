"""Full recompute of `summary` from records that are all applied in one run (docs/spec.md §2.2, §4.2).

Used to build a consistent starting point (generated data sets, initial loads) and as a scalable
cross-check of the incremental path. Each account's months are laid out on a dense timeline (NULL
for months without an active row, N − 1 NULLs in front); the N history positions of a row are then a
slice of that timeline, reversed: one pass per account, no self-join, no lookups per position.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.values import layout_grid, to_summary_values
from backfill_assets.transforms.classify import winners
from backfill_assets.transforms.latest import latest_months
from backfill_assets.transforms.months import month_index

A = "cons_acct_key"


def _timeline_fields(layout: Layout) -> tuple[str, ...]:
    """What a month contributes to the rows that reach it: its base_ts and the values its histories hold."""
    return ("base_ts", *dict.fromkeys(layout.history_sources.values()))


def _active_months(records: DataFrame, layout: Layout) -> DataFrame:
    """Summary values of the winning record of every month that is active (deletes make no row)."""
    values = to_summary_values(winners(records.repartition(A)), layout)
    return values.where(~F.col("is_deleted")).withColumn("idx", month_index("rpt_as_of_mo"))


def _timeline(entries: Column, layout: Layout) -> Column:
    """Dense timeline of the slots of month-sorted `entries`: NULL for each missing month, N − 1 NULLs in front.

    Each entry is preceded by as many NULLs as months are missing before it, so position
    N − 1 + (idx - first idx) holds the slot of month idx. The one lambda of the rebuild runs once
    per account; per row there is only native slicing (and `grid`).
    """
    null_slot = F.lit(None).cast(StructType([layout.summary[f] for f in _timeline_fields(layout)]))

    def gap_then_slot(e: Column, k: Column) -> Column:
        gap = F.when(k == 0, F.lit(layout.reach)).otherwise(e["idx"] - entries[k - 1]["idx"] - 1)
        return F.concat(F.array_repeat(null_slot, gap), F.array(e["slot"]))

    return F.flatten(F.transform(entries, gap_then_slot))


def _window(field: str, length: int) -> Column:
    """The N timeline values of months m … m-(N-1) of the exploded entry (position 0 = month m)."""
    start = F.col("entry.idx") - F.col("first") + 1
    return F.reverse(F.slice(F.col(f"_t_{field}"), start, length))


def _rebuild(records: DataFrame, latest_only: bool, layout: Layout) -> DataFrame:
    """Summary rows of every active month of the records' accounts, or only of each account's latest."""
    months = _active_months(records, layout)
    timelines, n = _timeline_fields(layout), layout.history_length
    entry = F.struct(
        F.col("idx"),
        F.struct(*timelines).alias("slot"),
        F.struct("rpt_as_of_mo", *[c for c in layout.scalar_names if c not in timelines]).alias("own"),
    )
    accounts = months.groupBy(A).agg(F.sort_array(F.collect_list(entry)).alias("entries"))
    entries = F.col("entries")
    # timelines once per account, in a projection of their own below the explode (not per row)
    laid_out = accounts.select(
        A, entries, entries[0]["idx"].alias("first"), _timeline(entries, layout).alias("_timeline")
    )
    per_field = laid_out.select(A, entries, "first", *[F.col("_timeline")[f].alias(f"_t_{f}") for f in timelines])
    exploded = F.slice(entries, -1, 1) if latest_only else entries
    rows = per_field.select(A, "first", *[f"_t_{f}" for f in timelines], F.explode(exploded).alias("entry"))
    histories = {h: _window(v, n) for h, v in layout.histories}
    own = {
        c: F.col(f"entry.slot.{c}" if c in timelines else f"entry.own.{c}")
        for c in ("rpt_as_of_mo", *layout.scalar_names)
    }
    columns: dict[str, Column] = {
        A: F.col(A),
        **own,
        "base_ts": F.array_max(_window("base_ts", n)),
        **histories,
        **layout_grid(layout, histories),
    }
    return rows.select(*[columns[c].cast(layout.summary[c].dataType).alias(c) for c in layout.summary_columns])


def rebuild_summary(records: DataFrame, layout: Layout) -> DataFrame:
    """The `summary` table that applying all of `records` in one run yields (the layout's columns, in order).

    A month has a row iff its winner is active; `base_ts` of a row is the greatest base_ts of the
    active winners of its months m-(N-1) … m (a delete in a single run never had a row, so never counts).
    Records are partitioned by account once; winners, grouping and explode need no other shuffle.
    """
    return _rebuild(records, latest_only=False, layout=layout)


def rebuild_latest(records: DataFrame, layout: Layout) -> DataFrame:
    """`latest_of(rebuild_summary(records, layout))`, building only the latest row of each account.

    After a one-run rebuild every row is active, so the latest row is the one of the greatest month.
    """
    return _rebuild(records, latest_only=True, layout=layout)


def latest_of(summary: DataFrame) -> DataFrame:
    """Per account, its row of the greatest active month, else of the greatest deleted month (docs/spec.md §2.3).

    The choice is made on the key columns alone and the rows are then picked by key, so the wide
    rows are neither sorted nor (when the keys are small enough to broadcast) shuffled.
    """
    keys = latest_months(summary.select(A, "rpt_as_of_mo", "soft_del_cd"))
    return summary.join(keys, [A, "rpt_as_of_mo"], "left_semi")
