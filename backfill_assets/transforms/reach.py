"""Which old rows a batch must read: a history window only for accounts with late records.

A record after an account's latest month (Case II) builds its row from the `latest_summary` row
alone, shifted by the gap; new accounts (Cases I, IV) have no rows. Only accounts with a late
record (Case III) need their `summary` rows 35 months around the batch. One exception keeps
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
    windows = summary.where(F.col(M).between(*window)).join(late_accounts(records), A, "left_semi")
    deletes = _forward_only(records).where(F.col("is_deleted")).select(A, M)
    at_deletes = summary.where(F.col(M).between(*months)).join(deletes, [A, M], "left_semi")
    return windows.unionByName(at_deletes)


def forward_latest(latest: DataFrame, records: DataFrame) -> DataFrame:
    """The `latest_summary` rows of accounts without late records: all the history Case II needs."""
    return latest.join(_forward_only(records).select(A).distinct(), A, "left_semi")
