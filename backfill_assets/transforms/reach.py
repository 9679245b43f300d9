"""Which old rows a batch must read: a history window only for accounts with late records.

A record after an account's latest month (Case II) builds its row from the `latest_summary` row
alone, shifted by the gap; new accounts (Cases I, IV) have no rows. Only accounts with a late
record (Case III) need their `summary` rows: keys 35 months around the batch, full rows from the
batch's first month on and, before it, only the rows records take their history from. One exception keeps
deletions exact: a delete of a month after the latest that already holds a deleted row re-marks
that row, so the row at exactly that key is read too.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

A, M = "cons_acct_key", "rpt_as_of_mo"


def late_accounts(records: DataFrame) -> DataFrame:
    """Accounts with at least one Case III record in the batch."""
    return records.where(F.col("case_type") == "III").select(A).distinct()


def _forward_only(records: DataFrame) -> DataFrame:
    return records.join(late_accounts(records), A, "left_anti")


def summary_rows_needed(
    summary: DataFrame, records: DataFrame, window: tuple[str, str], months: tuple[str, str]
) -> DataFrame:
    """The `summary` rows (any projection with key columns) within `window` that the batch needs."""
    # the late accounts broadcast: a sort-merge semi join would shuffle every row of the window
    windows = summary.where(F.col(M).between(*window)).join(F.broadcast(late_accounts(records)), A, "left_semi")
    deletes = _forward_only(records).where(F.col("is_deleted")).select(A, M)
    return windows.unionByName(rows_at(summary, deletes, months))


def rows_at(summary: DataFrame, keys: DataFrame, months: tuple[str, str]) -> DataFrame:
    """The `summary` rows at `keys` (account, month) within `months`.

    The keys (a batch's) are broadcast: planned as a sort-merge join, the semi join shuffled every
    row of the months (at medium 1.7 GB for a few hundred keys). They are neither de-duplicated nor
    persisted: a semi join needs neither, and Spark 3.5 fails on both over an Iceberg scan
    ("computeStats called before pushdown").
    """
    return summary.where(F.col(M).between(*months)).join(F.broadcast(keys.select(A, M)), [A, M], "left_semi")


def forward_latest(latest: DataFrame, records: DataFrame) -> DataFrame:
    """The `latest_summary` rows of accounts without late records: all the history Case II needs."""
    return latest.join(_forward_only(records).select(A).distinct(), A, "left_semi")
