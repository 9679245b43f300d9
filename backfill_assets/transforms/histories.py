"""What each record decides: one patch per row it reaches, at the position of its month there."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.layout import Layout
from backfill_assets.transforms.months import month_index


def history_patches(joined: DataFrame, layout: Layout) -> DataFrame:
    """Explode each joined record into patches: its own row (position 0) and every later target.

    A patch of a delete carries NULL values: the month is not active, so history shows NULL there.
    """
    exploded = joined.withColumn("target_mo", F.explode(F.concat(F.array("rpt_as_of_mo"), "target_mos")))
    position = month_index("target_mo") - month_index("rpt_as_of_mo")
    own_only = position == 0
    return exploded.select(
        "cons_acct_key",
        "rpt_as_of_mo",
        "target_mo",
        position.alias("position"),
        "base_ts",
        "is_deleted",
        *[
            (F.col(c) if c == "soft_del_cd" else F.when(~F.col("is_deleted"), F.col(c))).alias(c)
            for c in layout.scalar_names
        ],
        F.when(own_only, F.col("own_row")).alias("own_row"),
        F.when(own_only, F.col("base_mo")).alias("base_mo"),
    )
