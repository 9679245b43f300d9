"""Which row is an account's latest (docs/spec.md §2.3), also when it lies outside what a run reads.

A run reads an account's summary rows within its month range, the rows its records take their
older history from, and its `latest_summary` row. While one of those is active after the run, the
newest of them is the account's latest: every row that could beat it was read. Only an account left
with no active row in view (a run that deletes every active row it sees of the account) can have
its latest row anywhere: its greatest active row, or else its greatest deleted row, wherever it
lies. For those few accounts the run reads one more fact, from key columns only.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.values import is_deleted

A, M = "cons_acct_key", "rpt_as_of_mo"


def latest_months(rows: DataFrame) -> DataFrame:
    """(account, month) of each account's greatest active row, else its greatest row, among `rows`

    (any projection with the key columns and `soft_del_cd`).
    """
    best = F.max(F.struct((~is_deleted(F.col("soft_del_cd"))).alias("active"), F.col(M)))
    return rows.groupBy(A).agg(best[M].alias(M))


def accounts_without_active_row(old_rows: DataFrame, records: DataFrame) -> DataFrame:
    """Accounts that have rows among `old_rows` and not one of them active once `records` are applied.

    `old_rows`: key and `soft_del_cd` of the summary and latest_summary rows a run reads; `records`:
    the batch's winners (key and `is_deleted`). A record decides its month; a delete of a month
    without a row creates none.
    """
    old = old_rows.select(A, M, (~is_deleted(F.col("soft_del_cd"))).alias("old_active"))
    new = records.select(A, M, (~F.col("is_deleted")).alias("new_active"))
    return (
        old.join(new, [A, M], "full")
        .groupBy(A)
        .agg(
            F.max(F.col("old_active").isNotNull()).alias("has_rows"),
            F.max(F.coalesce("new_active", "old_active")).alias("any_active"),
        )
        .where(F.col("has_rows") & ~F.col("any_active"))
        .select(A)
    )


def latest_outside(summary_keys: DataFrame, accounts: DataFrame, months: tuple[str, str]) -> DataFrame:
    """(account, month) of the row each of `accounts` would take as its latest from outside `months`.

    `summary_keys` needs only the key columns and `soft_del_cd`: a scan of narrow columns, for the
    accounts a run left without an active row in view (`accounts_without_active_row`).
    """
    outside = summary_keys.where(~F.col(M).between(*months)).join(accounts, A, "left_semi")
    return latest_months(outside)
