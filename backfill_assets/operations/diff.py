"""The rows one run changed in summary and latest_summary, old → new (`backfill-assets diff RUN`).

The run log holds the snapshots each table had before the run (its STARTED entry) and the ones it
committed (`backfill_state`). The rows are compared at those two snapshots, for `summary` only in
the months whose files the run's commits added or removed (the `entries` metadata table read at the
committed snapshot: metadata only), for `latest_summary` (unpartitioned, one row per account)
whole; a table whose snapshot did not move is not read at all.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.tables import PARTITION
from backfill_assets.operations import Refused
from backfill_assets.operations.runs import committed_run
from backfill_assets.resources.lakehouse import Lakehouse

A, M = "cons_acct_key", "rpt_as_of_mo"


@dataclass(frozen=True)
class RowChange:
    """One row a run changed: its table and key, insert/update/delete, and each changed column's (old, new)."""

    table: str
    cons_acct_key: int
    rpt_as_of_mo: str
    change: str  # insert, update or delete
    columns: dict[str, tuple[Any, Any]]


def run_changes(lake: Lakehouse, run_id: str) -> list[RowChange]:
    """Every row `run_id` changed, summary first, each table by key; `Refused` for a run that did not commit."""
    run = committed_run(lake, run_id)
    out: list[RowChange] = []
    for table, label, key, before, after in (
        (lake.summary_table, "summary", (A, M), run.before[0], run.after[0]),
        (lake.latest_table, "latest_summary", (A,), run.before[1], run.after[1]),
    ):
        if before is None or after is None or before == after:
            continue
        months = _months_written(lake, table, before, after) if label == "summary" else None
        if months == []:  # the commits changed no file (a metadata change)
            continue
        out += _changes(lake, table, label, key, (before, after), months)
    return out


def _commits(lake: Lakehouse, table: str, before: int, after: int) -> list[int]:
    """The snapshots from `before` (excluded) to `after`: the run's own commits, following the parents."""
    parents = {
        r["snapshot_id"]: r["parent_id"]
        for r in lake.spark.session.table(f"{lake.name(table)}.snapshots").select("snapshot_id", "parent_id").collect()
    }
    chain: list[int] = []
    snapshot: int | None = after
    while snapshot is not None and snapshot != before:
        chain.append(snapshot)
        snapshot = parents.get(snapshot)
    if snapshot != before:
        raise Refused(f"{lake.name(table)}: snapshot {after} does not descend from {before} (expired or rolled back?)")
    return chain


def _months_written(lake: Lakehouse, table: str, before: int, after: int) -> list[str]:
    """Months (partitions) in which the run's commits added or removed data or delete files."""
    entries = lake.spark.session.read.option("snapshot-id", after).table(f"{lake.name(table)}.entries")
    written = entries.where(F.col("snapshot_id").isin(*_commits(lake, table, before, after)) & (F.col("status") != 0))
    return sorted(r[0] for r in written.select(f"data_file.partition.{PARTITION}").distinct().collect())


def _changes(
    lake: Lakehouse,
    table: str,
    label: str,
    key: Sequence[str],
    snapshots: tuple[int, int],
    months: list[str] | None,
) -> list[RowChange]:
    """Rows whose values differ between the two snapshots (NULL equal to NULL, arrays element-wise)."""
    old, new = (_rows(lake, table, s, months) for s in snapshots)
    columns = [c for c in new.columns if c in old.columns]
    joined = old.alias("o").join(new.alias("n"), [F.col(f"o.{k}") == F.col(f"n.{k}") for k in key], "full")
    differs: Column = reduce(lambda a, b: a | b, [~F.col(f"o.{c}").eqNullSafe(F.col(f"n.{c}")) for c in columns])
    rows = joined.where(differs).select(
        F.struct(*[F.col(f"o.{c}").alias(c) for c in columns]).alias("old"),
        F.struct(*[F.col(f"n.{c}").alias(c) for c in columns]).alias("new"),
        F.col(f"o.{A}").isNull().alias("inserted"),
        F.col(f"n.{A}").isNull().alias("deleted"),
    )
    out = [
        row_change(
            label,
            key,
            None if r["inserted"] else r["old"].asDict(recursive=True),
            None if r["deleted"] else r["new"].asDict(recursive=True),
        )
        for r in rows.collect()
    ]
    return sorted(out, key=lambda c: (c.cons_acct_key, c.rpt_as_of_mo))


def row_change(label: str, key: Sequence[str], old: dict[str, Any] | None, new: dict[str, Any] | None) -> RowChange:
    """One row's change from its two versions (None: it did not exist then), with only the columns that differ."""
    change = "insert" if old is None else "delete" if new is None else "update"
    this = old if new is None else new
    assert this is not None
    old, new = old or dict.fromkeys(this), new or dict.fromkeys(this)
    changed = {c: (old[c], new[c]) for c in this if c not in key and old[c] != new[c]}
    return RowChange(label, this[A], this[M], change, changed)


def _rows(lake: Lakehouse, table: str, snapshot: int, months: list[str] | None) -> DataFrame:
    rows = lake.read(table, snapshot)
    return rows if months is None else rows.where(F.col(PARTITION).isin(*months))


def plain(value: Any) -> Any:
    """A value for JSON: timestamps as ISO-8601 in UTC (Spark hands them over in local time), arrays element-wise."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def column_changes(c: RowChange) -> list[str]:
    """Each changed column as `column old → new`; arrays position by position."""
    out = []
    for column, (old, new) in c.columns.items():
        if isinstance(old, list) and isinstance(new, list):
            out += [
                f"{column}[{i}] {plain(o)!r} → {plain(n)!r}"
                for i, (o, n) in enumerate(zip(old, new, strict=False))
                if o != n
            ]
            if len(old) != len(new):
                out.append(f"{column} length {len(old)} → {len(new)}")
        else:
            out.append(f"{column} {plain(old)!r} → {plain(new)!r}")
    return out
