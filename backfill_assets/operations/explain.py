"""Where every history position of one summary row comes from (`backfill-assets explain ACCOUNT [MONTH]`).

Position `i` of row `(a, m)` holds month `m − i` (docs/spec.md §2.2); its source is the winning
record of that month (docs/spec.md §3) among the records applied so far: `base_ts` not after the
watermark and not rejected (docs/spec.md §7). The run that last wrote the row is found by walking
the committed runs newest first and reading the row at each run's snapshot before and after it:
the first run whose two versions differ wrote it last. Each read is one month of `summary`
filtered to the account (files pruned by the month partition and the key's column statistics);
the walk reads each snapshot once, so it costs one small read per run since the row last changed,
and it stops at a snapshot that has expired (the run is then unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import functions as F

from backfill_assets.operations import Refused
from backfill_assets.operations.runs import run_log
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.runlog import SUCCEEDED
from backfill_assets.resources.spark import snapshot_by_id
from backfill_assets.transforms.classify import winners
from backfill_assets.transforms.months import add_months, in_months
from backfill_assets.transforms.rejects import RECORD_ID, record_id

A, M = "cons_acct_key", "rpt_as_of_mo"
SOURCE = ("base_ts", "insert_ts", "update_ts", "soft_del_cd")


@dataclass(frozen=True)
class Position:
    """Position `i` of the row: its month, each history column's value there, and the winning record (or None)."""

    i: int
    month: str
    values: dict[str, Any]
    source: dict[str, Any] | None


@dataclass(frozen=True)
class Explanation:
    cons_acct_key: int
    rpt_as_of_mo: str
    row: dict[str, Any]
    last_run_id: str | None
    positions: list[Position]
    histories: tuple[str, ...]  # the history columns of the layout, in order


def explain(lake: Lakehouse, account: int, month: str | None = None) -> Explanation:
    """The row `(account, month)` (default: the account's latest_summary row), position by position."""
    month = month or _latest_month(lake, account)
    snapshot = lake.snapshot_id(lake.summary_table)
    row = _row(lake, account, month, snapshot)
    if row is None:
        raise Refused(f"{lake.name(lake.summary_table)} has no row for account {account} and month {month}")
    sources = _winners(lake, account, month)
    histories = tuple(lake.layout.history_sources)
    positions = []
    for i in range(lake.layout.history_length):
        at = add_months(month, -i)
        values = {h: row[h][i] if row[h] is not None and i < len(row[h]) else None for h in histories}
        positions.append(Position(i, at, values, sources.get(at)))
    return Explanation(account, month, row, _last_run(lake, account, month), positions, histories)


def _latest_month(lake: Lakehouse, account: int) -> str:
    latest = lake.read(lake.latest_table).where(F.col(A) == account).select(M).collect()
    if not latest:
        raise Refused(f"account {account} has no row in {lake.name(lake.latest_table)}")
    return str(latest[0][M])


def _row(lake: Lakehouse, account: int, month: str, snapshot: int | None) -> dict[str, Any] | None:
    rows = lake.read(lake.summary_table, snapshot).where((F.col(M) == month) & (F.col(A) == account)).collect()
    return rows[0].asDict(recursive=True) if rows else None


def _winners(lake: Lakehouse, account: int, month: str) -> dict[str, dict[str, Any]]:
    """The winning applied record of each of the row's months that has one: its version and delete code."""
    exists = lake.spark.session.catalog.tableExists
    if not exists(lake.name(lake.accounts_table)):
        return {}
    if exists(lake.name(lake.state_table)):
        watermark = lake.watermark()
    else:  # summary imported, no run yet: what import counts as applied (docs/spec.md §4.5)
        watermark = lake.read(lake.summary_table).agg(F.max("base_ts")).collect()[0][0]
    if watermark is None:
        return {}
    months = [add_months(month, -i) for i in range(lake.layout.history_length)]
    records = (
        lake.read(lake.accounts_table)
        .where((F.col(A) == account) & in_months(months) & (F.col("base_ts") <= F.lit(watermark)))
        .withColumn(RECORD_ID, record_id(lake.layout.accounts_all.fieldNames()))
    )
    applied = records
    if exists(lake.name(lake.rejects_table)):
        rejects = lake.read(lake.rejects_table).where(F.col(A) == account).select(RECORD_ID)
        applied = records.join(rejects, RECORD_ID, "left_anti")
    return {r[M]: {c: r[c] for c in SOURCE} for r in winners(applied).select(M, *SOURCE).collect()}


def _last_run(lake: Lakehouse, account: int, month: str) -> str | None:
    """The newest committed run whose snapshots before and after it hold different versions of the row."""
    seen: dict[int, dict[str, Any] | None] = {}

    def version(snapshot: int) -> dict[str, Any] | None:
        if snapshot not in seen:
            seen[snapshot] = _row(lake, account, month, snapshot)
        return seen[snapshot]

    for run in run_log(lake):
        before, after = run.before[0], run.after[0]
        if run.outcome != SUCCEEDED or before is None or after is None or before == after:
            continue
        if any(snapshot_by_id(lake.spark, lake.name(lake.summary_table), s) is None for s in (before, after)):
            return None  # expired: older runs cannot be told apart
        if version(before) != version(after):
            return run.run_id
    return None
