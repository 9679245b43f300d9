"""Which records are new, which version of a month wins, and which docs/spec.md §5 case each is."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.values import to_summary_values


def winners(records: DataFrame) -> DataFrame:
    """One record per (account, month): greatest (base_ts, insert_ts, update_ts), NULL losing."""
    order = Window.partitionBy("cons_acct_key", "rpt_as_of_mo").orderBy(
        F.col("base_ts").desc(), F.col("insert_ts").desc_nulls_last(), F.col("update_ts").desc_nulls_last()
    )
    return records.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")


def classify(batch_winners: DataFrame, latest_summary: DataFrame, layout: Layout) -> DataFrame:
    """Summary values of each winning record plus its `case_type` against `latest_summary`.

    Reads only the key and month of `latest_summary`, joined on the batch's accounts.
    """
    values = to_summary_values(batch_winners, layout)
    latest = latest_summary.select("cons_acct_key", F.col("rpt_as_of_mo").alias("latest_mo"))
    months_of_account = Window.partitionBy("cons_acct_key")
    case = (
        F.when(F.col("latest_mo").isNull() & (F.count("*").over(months_of_account) == 1), "I")
        .when(F.col("latest_mo").isNull(), "IV")
        .when(F.col("rpt_as_of_mo") > F.col("latest_mo"), "II")
        .otherwise("III")
    )
    return values.join(latest, "cons_acct_key", "left").withColumn("case_type", case)
