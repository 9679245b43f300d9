"""Each new record with the summary rows its month can reach (SPEC §1): itself and 35 later months."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.tables import HISTORY_LENGTH
from backfill_assets.transforms.months import month_index, month_key
from backfill_assets.transforms.values import is_deleted

A = "cons_acct_key"
REACH = HISTORY_LENGTH - 1


def row_states(summary_keys: DataFrame) -> DataFrame:
    """(account, month index, active) of existing summary rows; needs only key and soft_del_cd."""
    return summary_keys.select(
        A, month_index("rpt_as_of_mo").alias("idx"), (~is_deleted(F.col("soft_del_cd"))).alias("active")
    )


def join_windows(records: DataFrame, summary_keys: DataFrame) -> DataFrame:
    """One row per counting record: `own_row`, `base_mo` and the later rows it must patch.

    * `own_row`: 'active', 'deleted' or 'none' (the state of the record's month before the run).
      A delete of a month that has no row counts for nothing and is dropped here.
    * `base_mo`: where an active record's row takes its older history from: its own row if active,
      else the closest earlier active row within 35 months (NULL: no older history).
    * `target_mos`: the rows (a, m+1 … m+35) that are active after the run (old active rows not
      deleted by the batch, and rows the batch creates or re-activates).
    """
    rec = records.withColumn("m", month_index("rpt_as_of_mo"))
    old = row_states(summary_keys).join(rec.select(A).distinct(), A, "left_semi")
    with_own = rec.join(old.select(A, F.col("idx").alias("m"), F.col("active").alias("own_active")), [A, "m"], "left")
    own_row = F.when(F.col("own_active").isNull(), "none").when(F.col("own_active"), "active").otherwise("deleted")
    counted = with_own.withColumn("own_row", own_row).where(~F.col("is_deleted") | (F.col("own_row") != "none"))

    batch_states = counted.select(A, F.col("m").alias("idx"), (~F.col("is_deleted")).alias("active"))
    after = old.join(batch_states, [A, "idx"], "left_anti").unionByName(batch_states).where("active")
    later = (
        counted.select(A, "m")
        .join(after.select(A, "idx"), A)
        .where((F.col("idx") > F.col("m")) & (F.col("idx") <= F.col("m") + REACH))
        .groupBy(A, "m")
        .agg(F.array_sort(F.collect_list(month_key("idx"))).alias("target_mos"))
    )
    earlier = (
        counted.where("own_row != 'active' AND NOT is_deleted")
        .select(A, "m")
        .join(old.where("active").select(A, "idx"), A)
        .where((F.col("idx") < F.col("m")) & (F.col("idx") >= F.col("m") - REACH))
        .groupBy(A, "m")
        .agg(F.max("idx").alias("base_idx"))
    )
    base_mo = (
        F.when(F.col("is_deleted"), F.lit(None))
        .when(F.col("own_row") == "active", F.col("rpt_as_of_mo"))
        .otherwise(month_key("base_idx"))
    )
    return (
        counted.join(later, [A, "m"], "left")
        .join(earlier, [A, "m"], "left")
        .withColumn("base_mo", base_mo)
        .withColumn("target_mos", F.coalesce("target_mos", F.array().cast("array<string>")))
        .drop("m", "own_active", "base_idx")
    )
