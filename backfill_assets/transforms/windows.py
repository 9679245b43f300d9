"""Each new record with the summary rows its month can reach (docs/spec.md §1): itself and N − 1 later months."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from backfill_assets.contracts.values import is_deleted
from backfill_assets.transforms.months import month_index, month_key

A = "cons_acct_key"


def join_windows(records: DataFrame, summary_keys: DataFrame, reach: int) -> DataFrame:
    """One row per counting record, with `own_row`, `base_mo` and `target_mos`.

    * `own_row`: 'active', 'deleted' or 'none': the state of the record's month before the run.
      A delete of a month that has no row counts for nothing and is dropped here.
    * `base_mo`: where an active record's row takes its older history from: its own row if it was
      active, else the closest earlier active row within `reach` (N − 1) months (NULL: no older history). For a
      delete, that closest earlier active row: the account's latest row if the delete removes its
      newest months. Before the run's first month, these are the only rows the apply step reads.
    * `target_mos`: the later rows (a, m+1 … m+reach) that are active after the run: old active rows
      the batch does not delete, and rows the batch creates or re-activates.

    `summary_keys` needs only the key and `soft_del_cd`. The work is one shuffle by account: each
    account's row states and records are gathered, then combined with array functions.
    """
    rec = records.withColumn("m", month_index("rpt_as_of_mo"))
    states = summary_keys.join(rec.select(A).distinct(), A, "left_semi").select(
        A,
        F.struct(month_index("rpt_as_of_mo").alias("idx"), (~is_deleted(F.col("soft_del_cd"))).alias("on")).alias("s"),
    )
    per_account = states.groupBy(A).agg(F.collect_list("s").alias("old"))
    batch = F.collect_list(F.struct(F.col("m").alias("idx"), (~F.col("is_deleted")).alias("on"))).over(
        Window.partitionBy(A)
    )
    joined = (
        rec.withColumn("new", batch)
        .join(per_account, A, "left")
        .withColumn("old", F.coalesce("old", F.array().cast("array<struct<idx:int,on:boolean>>")))
    )
    own = F.filter("old", lambda s: s["idx"] == F.col("m"))
    own_row = F.when(F.size(own) == 0, "none").when(own[0]["on"], "active").otherwise("deleted")
    new_idx = F.transform("new", lambda s: s["idx"])
    active_after = F.array_union(
        F.transform(F.filter("old", lambda s: s["on"] & ~F.array_contains(new_idx, s["idx"])), lambda s: s["idx"]),
        F.transform(F.filter("new", lambda s: s["on"]), lambda s: s["idx"]),
    )
    later = F.array_sort(F.filter(active_after, lambda i: (i > F.col("m")) & (i <= F.col("m") + reach)))
    earlier_active = F.filter("old", lambda s: s["on"] & (s["idx"] < F.col("m")) & (s["idx"] >= F.col("m") - reach))
    base_mo = F.when(~F.col("is_deleted") & (F.col("own_row") == "active"), F.col("rpt_as_of_mo")).otherwise(
        month_key(F.array_max(F.transform(earlier_active, lambda s: s["idx"])))
    )
    return (
        joined.withColumn("own_row", own_row)
        .where(~F.col("is_deleted") | (F.col("own_row") != "none"))
        .withColumn("base_mo", base_mo)
        .withColumn("target_mos", F.transform(later, month_key))
        .drop("m", "old", "new")
    )
