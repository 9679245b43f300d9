"""Value rules of docs/spec.md §3: sentinels, the payment rating, the grid, deletions."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.tables import DELETE_CODES

_ASSET_CLASS_RATING = {
    "S": ("1", "01", "S"),
    "B": ("2", "02", "B"),
    "D": ("3", "03", "D"),
    "L": ("4", "04", "L"),
    "M": ("5", "05", "M"),
}


def is_deleted(soft_del_cd: Column) -> Column:
    """True for the delete codes; NULL and any other code mean active."""
    return F.coalesce(soft_del_cd.isin(*DELETE_CODES), F.lit(False))


def payment_rating(days_past_due: Column, asset_class: Column) -> Column:
    """payment_rating_cd from days past due, or from the asset class when days are negative."""
    by_class = F.lit(None).cast("string")
    for rating, codes in reversed(_ASSET_CLASS_RATING.items()):
        by_class = F.when(asset_class.isin(*codes), F.lit(rating)).otherwise(by_class)
    by_days = F.when(days_past_due >= 180, "6")
    for upper, rating in ((150, "5"), (120, "4"), (90, "3"), (60, "2"), (30, "1"), (0, "0")):
        by_days = by_days.when(days_past_due >= upper, rating)
    return (
        F.when(days_past_due.isNull(), F.lit(None).cast("string")).when(days_past_due < 0, by_class).otherwise(by_days)
    )


def grid(history: Column, missing: str = "?") -> Column:
    """The payment history grid: one character per position, position 0 leftmost, NULL as `missing` (no history: empty).

    `array_join` is compiled code; a per-element lambda would be interpreted for every row.
    """
    return F.coalesce(F.array_join(history, "", missing), F.lit(""))


def layout_grid(layout: Layout, histories: dict[str, Column]) -> dict[str, Column]:
    """The layout's grid column (if it has one) rendered from its history in `histories`."""
    g = layout.grid
    return {g.column: grid(histories[g.history], g.missing)} if g else {}


def scalar_values(layout: Layout) -> dict[str, Column]:
    """Summary scalar column -> its value from an accounts_all record: sentinels made NULL, the rating derived."""
    values: dict[str, Column] = {}
    for name, source in layout.sources.items():
        sentinels = layout.sentinels.get(name)
        column = F.col(source)
        values[name] = F.when(column.isin(*sentinels), F.lit(None)).otherwise(column) if sentinels else column
    for s in layout.scalars:
        if s.rating:
            values[s.name] = payment_rating(values[s.rating[0]], values[s.rating[1]])
    return {name: values[name].cast(t) for name, t in layout.scalar_types.items()}


def to_summary_values(records: DataFrame, layout: Layout) -> DataFrame:
    """accounts_all records -> summary scalar columns (keys, base_ts and flags kept)."""
    return records.select(
        "cons_acct_key",
        "rpt_as_of_mo",
        "base_ts",
        *[c.alias(n) for n, c in scalar_values(layout).items()],
        is_deleted(F.col("soft_del_cd")).alias("is_deleted"),
    )
