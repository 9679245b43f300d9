"""The late batch: the next delivery for some accounts, every base_ts after the history's."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.tables import DELETE_CODES
from backfill_assets.generate.draws import Draws, int_in, uniform
from backfill_assets.generate.records import (
    AMOUNT_SENTINELS,
    AMOUNTS,
    DAY,
    HISTORY_DELAY_DAYS,
    VALUE_DRAWS,
    A,
    default_values,
    is_missing,
    layout_values,
    month_start,
    record_versions,
    tie_versions,
    to_records,
)

LATE_SLOTS = 3  # a late account gets 1 to 3 late months
# every generated base_ts lies within this many days after the end month: history delay, late slots, second versions
DELIVERY_DAYS = HISTORY_DELAY_DAYS + LATE_SLOTS + 2
LATE_NULLABLE = (*AMOUNTS, "days_past_due_ct_4in", "asset_class_cd_4in")
LATE_DRAWS = (
    *VALUE_DRAWS,
    *("month-kind", "any", "gap", "before", "deep", "base", "again", "again-kind", "tie-direction"),
    *("content", "delete", *[f"null-{c}" for c in LATE_NULLABLE], *[f"late-sentinel-{a}" for a in AMOUNTS]),
)


def _late_month(seed: int, d: Draws, first_mo: int, n: int) -> Column:
    """Month of a late slot: the latest month, a missing month, any month, one before the account's
    first month, or one more than N − 1 months before its latest month (each falls back to any month)."""
    acct, first, last = F.col(A), F.col("first"), F.col("last")
    anywhere = d.int_in("any", first, last)
    gaps = F.filter(F.sequence(first, last), lambda i: is_missing(seed, acct, i))
    gap = F.element_at(gaps, d.int_in("gap", 1, F.size(gaps)))
    before = d.int_in("before", first_mo, first - 1)
    deep = d.int_in("deep", first, last - n)
    kind = d["month-kind"]
    return (
        F.when(kind < 0.25, last)
        .when((kind < 0.50) & (F.size(gaps) > 0), gap)
        .when((kind >= 0.70) & (kind < 0.80) & (first > first_mo), before)
        .when((kind >= 0.80) & (last - n >= first), deep)
        .otherwise(anywhere)
    )


def _late_values(d: Draws, layout: Layout) -> dict[str, Column]:
    """Values of a late record: about 2% deletes, 10% NULLs and 8% sentinels (always the balance, some others)."""
    values = default_values(d)
    kind = d["content"]
    delete, nulls, sentinels = kind < 0.02, (kind >= 0.02) & (kind < 0.12), (kind >= 0.12) & (kind < 0.20)
    out = dict(values)
    out["soft_del_cd"] = F.when(delete, d.choice("delete", DELETE_CODES)).otherwise(values["soft_del_cd"])
    for name in LATE_NULLABLE:
        always = name == "acct_bal_am"
        nulled = nulls & (F.lit(always) | (d[f"null-{name}"] < 0.5))
        value = F.when(nulled, F.lit(None))
        if name in AMOUNTS:
            sentinel = d.choice(f"late-sentinel-{name}", list(AMOUNT_SENTINELS))
            value = value.when(sentinels & (F.lit(always) | (d[f"null-{name}"] < 0.3)), sentinel)
        out[name] = value.otherwise(values[name])
    return layout_values(out, layout)


def draw_late(
    seed: int, accounts: DataFrame, first_mo: int, end_mo: int, late_fraction: float, layout: Layout
) -> DataFrame:
    """The late batch: 1 to 3 late months for `late_fraction` of the accounts, and ~8% second versions."""
    acct, slot = F.col(A), F.col("slot")
    start = month_start(F.lit(end_mo + 1)) + HISTORY_DELAY_DAYS * DAY  # > every history base_ts
    count = int_in(uniform(seed, "late-count", acct), 1, LATE_SLOTS)
    d = Draws(seed, "late", LATE_DRAWS, acct, slot)
    slots = d.add_to(
        accounts.where(uniform(seed, "late", acct) < late_fraction).select(
            "*", F.explode(F.sequence(F.lit(0), count - 1)).alias("slot")
        )
    )
    # distinct base_ts per slot (mod LATE_SLOTS + 1), so that versions of one month never tie completely
    slots = slots.withColumn("idx", _late_month(seed, d, first_mo, layout.history_length)).withColumn(
        "base_s", start + d.int_in("base", 0, DAY - 1) * (LATE_SLOTS + 1) + slot
    )
    slots = slots.withColumns(record_versions(d))
    again = slots.where(d["again"] < 0.08)
    tie = d["again-kind"] < 0.5
    later = Draws(seed, "late-later", LATE_DRAWS, acct, slot)
    later_versions = later.add_to(again.where(~tie).withColumn("base_s", F.col("base_s") + 3600 * (LATE_SLOTS + 1)))
    later_versions = later_versions.withColumns(record_versions(later))
    return (
        to_records(slots, _late_values(d, layout), layout)
        .unionByName(tie_versions(again.where(tie), d, Draws(seed, "late-tie", VALUE_DRAWS, acct, slot), layout))
        .unionByName(to_records(later_versions, _late_values(later, layout), layout))
    )
