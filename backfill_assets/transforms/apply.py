"""Combine the patches of all late months onto the summary rows they reach (docs/spec.md §4.2, §2.3)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from backfill_assets.contracts.tables import GRID, HISTORIES, HISTORY_LENGTH, SCALAR_TYPES, SCALARS, SUMMARY_COLUMNS
from backfill_assets.contracts.values import grid, is_deleted
from backfill_assets.transforms.months import month_index

A = "cons_acct_key"


def _histories() -> Column:
    """All seven histories, a struct of seven 36-element arrays.

    Each starts from the old row's array, or else the base row's shifted by `shift` months (whole-array
    functions, compiled), and takes each patch of month (row − i) at its position i. Only that last
    step is a lambda, one iteration per patch (one to three a row), not one per position: Spark
    interprets lambdas, and one that built all seven values of each of the 36 positions took most of
    a medium batch's `apply_patches`.
    """
    old, base, shift = F.col("old"), F.col("base.row"), F.col("shift")

    def history(h: str, v: str) -> Column:
        nulls = F.array_repeat(F.lit(None).cast(SCALAR_TYPES[v]), HISTORY_LENGTH)
        shifted = F.concat(F.array_repeat(F.lit(None).cast(SCALAR_TYPES[v]), shift), F.coalesce(base[h], nulls))
        start = F.coalesce(
            F.when(F.col("old_active"), old[h]).when(shift.isNotNull(), F.slice(shifted, 1, HISTORY_LENGTH)), nulls
        )
        return F.aggregate(
            F.map_entries("patch"),
            start,
            lambda acc, e: F.concat(
                F.slice(acc, F.lit(1), e["key"]),
                F.array(e["value"][v]),
                F.slice(acc, e["key"] + 2, F.lit(HISTORY_LENGTH - 1) - e["key"]),
            ),
        )

    return F.struct(*[history(h, v).alias(v) for h, v in HISTORIES.items()])


def _gather(patches: DataFrame, window_rows: DataFrame, latest: DataFrame) -> DataFrame:
    """Per (account, month): the old row, whether it is the latest, its own record, and its patch map."""
    none = F.lit(None)
    rows = window_rows.select(
        A, F.col("rpt_as_of_mo").alias("mo"), F.struct(*SUMMARY_COLUMNS).alias("old"), F.lit(False).alias("was_latest")
    )
    latest = latest.select(
        A, F.col("rpt_as_of_mo").alias("mo"), F.struct(*SUMMARY_COLUMNS).alias("old"), F.lit(True).alias("was_latest")
    )
    patch_entries = patches.select(
        A,
        F.col("target_mo").alias("mo"),
        F.when(F.col("position") == 0, F.struct("is_deleted", *SCALARS, "own_row", "base_mo")).alias("own"),
        F.struct("position", F.struct(*HISTORIES.values())).alias("entry"),
        "base_ts",
    )
    olds = rows.unionByName(latest).select(
        "*", none.alias("own"), none.cast(patch_entries.schema["entry"].dataType).alias("entry"), none.alias("base_ts")
    )
    everything = olds.unionByName(
        patch_entries.select("*", none.cast(rows.schema["old"].dataType).alias("old"), F.lit(False).alias("was_latest"))
    )
    return (
        everything.repartition(A)  # one shuffle: everything below stays within an account
        .groupBy(A, "mo")
        .agg(
            F.first(F.when(~F.col("was_latest"), F.col("old")), ignorenulls=True).alias("summary_old"),
            F.first(F.when(F.col("was_latest"), F.col("old")), ignorenulls=True).alias("latest_old"),
            F.max("was_latest").alias("was_latest"),
            F.first("own", ignorenulls=True).alias("own"),
            F.map_from_entries(F.collect_list("entry")).alias("patch"),
            F.max("base_ts").alias("new_base_ts"),
        )
    )


def apply_patches(patches: DataFrame, window_rows: DataFrame, latest: DataFrame) -> DataFrame:
    """Every gathered row, new or old, with flags `written` (summary changes) and `latest_changed`.

    `window_rows`: the old summary rows of the patched accounts, from 35 months before the first
    target month to the last, and any row that can become an account's latest (`transforms.latest`);
    `latest`: the old latest_summary rows of the batch's accounts. The newest active row given, else
    the newest, becomes the latest. A deleted month keeps its old content with the delete's
    `soft_del_cd`; a row no patch reaches stays as it was.
    """
    has_own = F.col("own").isNotNull()
    own_deleted = F.coalesce(F.col("own.is_deleted"), F.lit(False))
    written = has_own | (F.col("old_active") & (F.size("patch") > 0))
    by_month = Window.partitionBy(A).orderBy("mo")
    staged = (
        _gather(patches, window_rows, latest)
        .withColumn("old", F.coalesce("summary_old", "latest_old"))  # equal where both exist (checked)
        .withColumn("old_active", F.col("old").isNotNull() & ~is_deleted(F.col("old.soft_del_cd")))
        .withColumn(
            "base",  # the closest earlier active old row, used only if it is the record's base_mo
            F.last(
                F.when(F.col("old_active"), F.struct(F.col("mo"), F.col("old").alias("row"))), ignorenulls=True
            ).over(by_month.rowsBetween(Window.unboundedPreceding, -1)),
        )
        .withColumn(
            "base",
            F.when((F.col("own.own_row") != "active") & (F.col("base.mo") == F.col("own.base_mo")), F.col("base")),
        )
        .withColumn("shift", month_index("mo") - month_index("base.mo"))
        .withColumn("histories", F.when(written & ~own_deleted, _histories()))
        # rows that exist before or after; a filter on the new row itself would be inlined below and
        # compute every history twice
        .where(written | F.col("old").isNotNull())
    )

    def scalar(c: str) -> Column:
        keep_old = ~has_own | (own_deleted & F.lit(c != "soft_del_cd"))
        return F.when(keep_old, F.col(f"old.{c}")).otherwise(F.col(f"own.{c}"))

    histories = {
        h: F.when(own_deleted, F.col(f"old.{h}")).otherwise(F.col("histories")[v]) for h, v in HISTORIES.items()
    }
    new_row = F.struct(
        F.col(A).alias(A),
        F.col("mo").alias("rpt_as_of_mo"),
        F.greatest("new_base_ts", "old.base_ts").alias("base_ts"),  # the old row's: a re-applied record is older
        *[scalar(c).alias(c) for c in SCALARS],
        *[c.alias(h) for h, c in histories.items()],
        grid(histories["payment_rating_cd_history"]).alias(GRID),
    )
    updated = staged.select(
        A,
        "mo",
        "was_latest",
        written.alias("written"),
        F.when(written, new_row).otherwise(F.col("old")).alias("row"),
        # what the run read, for the checks: the old summary row where `row` replaces it (elsewhere
        # `row` is that old row: not kept twice), and the old latest_summary row
        F.col("summary_old").isNotNull().alias("from_summary"),
        F.when(written, F.col("summary_old")).alias("summary_old"),
        "latest_old",
    )
    # the newest active row, else the newest: from maxima over the account, which need no sort of their own
    account = Window.partitionBy(A)
    newest_active = F.max(F.when(~is_deleted(F.col("row.soft_del_cd")), F.col("mo"))).over(account)
    is_newest = F.col("mo") == F.coalesce(newest_active, F.max("mo").over(account))
    return updated.withColumn("latest_changed", is_newest & (F.col("written") | ~F.col("was_latest")))


def _rows(frame: DataFrame, row: str | Column) -> DataFrame:
    """Summary columns from a row struct, the account key taken from `frame` itself: Spark then
    knows the result is still partitioned and sorted by account, so what is grouped or joined by
    account below needs no shuffle of the wide rows."""
    struct = F.col(row) if isinstance(row, str) else row
    return frame.select(*[F.col(A) if c == A else struct[c].alias(c) for c in SUMMARY_COLUMNS])


def written_rows(updated: DataFrame) -> DataFrame:
    """The summary rows to MERGE."""
    return _rows(updated.where("written"), "row")


def changed_latest_rows(updated: DataFrame) -> DataFrame:
    """The latest_summary rows to MERGE."""
    return _rows(updated.where("latest_changed"), "row")


def rows_read(updated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The summary rows and the latest_summary rows the run read, as it read them."""
    summary = F.coalesce(F.col("summary_old"), F.col("row"))
    return _rows(updated.where("from_summary"), summary), _rows(
        updated.where(F.col("latest_old").isNotNull()), "latest_old"
    )


def rows_after(updated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The summary rows read or written, and each account's latest_summary row, as they are after the run."""
    summary = _rows(updated.where(F.col("from_summary") | F.col("written")), "row")
    replaced = F.max("latest_changed").over(Window.partitionBy(A))
    latest = updated.withColumn("_replaced", replaced).where(
        F.col("latest_changed") | (F.col("latest_old").isNotNull() & ~F.col("_replaced"))
    )
    return summary, _rows(latest, F.when(F.col("latest_changed"), F.col("row")).otherwise(F.col("latest_old")))
