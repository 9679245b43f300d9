"""Value rules of docs/spec.md §3: sentinels, the payment rating, the grid, deletions."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.tables import AMOUNT_SENTINELS, DELETE_CODES, SCALAR_SOURCES, SENTINEL_AMOUNTS

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


def grid(payment_rating_history: Column) -> Column:
    """The 36-character payment history grid: position 0 leftmost, NULL as '?' (no history: empty).

    `array_join` is compiled code; a per-element lambda would be interpreted for every row.
    """
    return F.coalesce(F.array_join(payment_rating_history, "", "?"), F.lit(""))


def to_summary_values(records: DataFrame) -> DataFrame:
    """accounts_all records -> summary scalar columns (keys, base_ts and flags kept)."""
    amount = {name: F.col(SCALAR_SOURCES[name]) for name in SENTINEL_AMOUNTS}
    scalars = {
        name: (
            F.when(amount[name].isin(*AMOUNT_SENTINELS), F.lit(None).cast("int")).otherwise(amount[name])
            if name in amount
            else F.col(source)
        )
        for name, source in SCALAR_SOURCES.items()
    }
    return records.select(
        "cons_acct_key",
        "rpt_as_of_mo",
        "base_ts",
        *[c.alias(n) for n, c in scalars.items()],
        payment_rating(F.col("days_past_due_ct_4in"), F.col("asset_class_cd_4in")).alias("payment_rating_cd"),
        is_deleted(F.col("soft_del_cd")).alias("is_deleted"),
    )
