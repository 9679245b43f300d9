"""Keeping the tables tidy under the run lock: `compact` merges the delete files merge-on-read runs leave;
`maintain` compacts, expires the snapshots nothing needs any more, and removes orphan files.

What `maintain` keeps (docs/operations.md, "Maintenance"): every snapshot newer than the cut-off; every
snapshot a run of the last `keep_days` days started from (its STARTED entry: what a failed run is rolled
back to) or committed (its `backfill_state` row: what `diff` and `explain` read); every snapshot a tag or
branch points at (the `run-<run id>` tags), and a branch's own commits; each table's current snapshot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
from pyspark.sql import functions as F

from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.runlog import STARTED, begin_run, end_run
from backfill_assets.resources.spark import latest_snapshot

KEEP_DAYS = 7
# Iceberg's own default for remove_orphan_files, and well past the 24 hours its procedure insists on: a
# file younger than this may belong to a write still in flight outside the lock (an import, a Dagster
# step run on its own), which has written its files but not yet committed them.
ORPHAN_AGE = dt.timedelta(days=3)
_PARALLEL_TABLES = 3  # tables maintained side by side
# the IO manager's tables (io_manager.py): one per asset of the graph with an output (test_definitions.py)
INTERMEDIATE = (
    "classified_accounts",
    "case3_backfill",
    "new_and_forward_accounts",
    "joined_windows",
    "updated_histories",
)


class LockHeld(Exception):
    """Another run holds the run lock: nothing was changed."""


@dataclass(frozen=True)
class TableUpkeep:
    """What `maintain` did to one table."""

    table: str
    compaction: dict[str, int]  # counts of the compaction, {} when there was nothing to compact (or not compacted)
    expired: list[int]  # snapshot ids expired
    kept: list[int]  # snapshot ids left
    files_deleted: int  # data, delete and metadata files only the expired snapshots referenced
    orphans: list[str]  # orphan files removed


@dataclass(frozen=True)
class Upkeep:
    """What `maintain` did: the cut-offs it used, the runs whose snapshots it kept, and each table."""

    keep_days: int
    expire_before: dt.datetime  # snapshots older than this were expired unless kept for a reason
    orphans_before: dt.datetime  # orphan files older than this were removed
    window_runs: list[str]  # the runs of the last keep_days days
    tables: list[TableUpkeep]


@contextmanager
def _locked(lake: Lakehouse, run_id: str) -> Iterator[None]:
    """Hold the run lock for `run_id`; a failure ends the run FAILED (summary, latest_summary and rejects
    go back to the snapshots it began with: for compaction a no-op on the rows)."""
    try:
        begin_run(lake, run_id)
    except dg.Failure as refused:
        raise LockHeld(refused.description or str(refused)) from refused
    try:
        yield
    except Exception as error:
        end_run(lake, run_id, ok=False, error=str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise
    end_run(lake, run_id, ok=True)


def compact(lake: Lakehouse, run_id: str) -> dict[str, dict[str, int]]:
    """Rewrite the data files of summary and latest_summary that carry deletes, under the run lock.

    Merge-on-read leaves position-delete files behind each run; reads pay for them until this
    merges them into the data (a logical no-op: the same rows, new files). It holds the run lock
    because a compaction committing under a running MERGE would leave that MERGE's deletes
    pointing at replaced files. Raises `LockHeld` while another run holds the lock.
    """
    with _locked(lake, run_id):
        return _compact_tables(lake)


def _compact_tables(lake: Lakehouse) -> dict[str, dict[str, int]]:
    """Both tables side by side: the small latest_summary rewrite fills the gaps between summary's jobs."""
    tables = (lake.summary_table, lake.latest_table)
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
        return dict(zip(tables, pool.map(lambda table: _rewrite_files_with_deletes(lake, table), tables), strict=True))


def maintain(
    lake: Lakehouse,
    run_id: str,
    keep_days: int = KEEP_DAYS,
    now: dt.datetime | None = None,
    orphan_age: dt.timedelta = ORPHAN_AGE,
) -> Upkeep:
    """Compact, expire snapshots older than `keep_days` outside the rollback window, remove orphan files.

    All under the run lock (`LockHeld` while another run holds it), so that no run commits, rolls
    back or records snapshots meanwhile. `now` (default: the clock) places the cut-off, so tests
    need not wait days; orphan files are judged by their age on the real clock, because the files
    of a write in flight are young in real time whatever `now` says.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, not {keep_days}")
    if orphan_age < dt.timedelta(days=1):  # Iceberg's procedure refuses it: it could delete a write in flight
        raise ValueError(f"orphan_age must be at least one day, not {orphan_age}")
    clock = dt.datetime.now(dt.UTC)
    cutoff = (now or clock).astimezone(dt.UTC) - dt.timedelta(days=keep_days)
    orphans_before = clock - orphan_age
    with _locked(lake, run_id):
        compacted = _compact_tables(lake)
        runs, window = _rollback_window(lake, cutoff)

        def upkeep_of(table: str) -> TableUpkeep:
            expired, kept, deleted = _expire(lake, table, cutoff, window.get(table, set()))
            orphans = _remove_orphans(lake, table, orphans_before)  # after expiry: its files are gone already
            return TableUpkeep(table, compacted.get(table, {}), expired, kept, deleted, orphans)

        # the tables side by side: each procedure is mostly the driver reading metadata, one at a time
        with ThreadPoolExecutor(max_workers=_PARALLEL_TABLES) as pool:
            tables = list(pool.map(upkeep_of, _tables(lake)))
    return Upkeep(keep_days, cutoff, orphans_before, runs, tables)


def _tables(lake: Lakehouse) -> list[str]:
    """Ours, as far as they exist: not the source table accounts_all, which the bureau's loads own."""
    ours = (lake.summary_table, lake.latest_table, lake.state_table, lake.runs_table, lake.rejects_table, *INTERMEDIATE)
    session = lake.spark.session
    existing = {
        r["tableName"] for r in session.sql(f"SHOW TABLES IN {lake.spark.catalog}.{lake.spark.namespace}").collect()
    }
    return [t for t in ours if t in existing and t != lake.accounts_table]


def _rollback_window(lake: Lakehouse, cutoff: dt.datetime) -> tuple[list[str], dict[str, set[int]]]:
    """The runs of the window (an entry in the run log or a commit since `cutoff`) and, per table, the
    snapshots they started from (STARTED entry) and committed (`backfill_state` row)."""
    session, since = lake.spark.session, F.lit(cutoff)
    log = session.table(lake.name(lake.runs_table))
    state = session.table(lake.name(lake.state_table))
    recent = {r[0] for r in log.where(F.col("at") >= since).select("run_id").collect()}
    recent |= {r[0] for r in state.where(F.col("committed_at") >= since).select("run_id").collect()}
    started = log.where((F.col("event") == STARTED) & F.col("run_id").isin(sorted(recent))).collect()
    committed = state.where(F.col("run_id").isin(sorted(recent))).collect()
    window: dict[str, set[int]] = {t: set() for t in (lake.summary_table, lake.latest_table, lake.rejects_table)}
    for row in [*started, *committed]:
        window[lake.summary_table].add(row["summary_snapshot"])
        window[lake.latest_table].add(row["latest_snapshot"])
    for row in started:
        window[lake.rejects_table].add(row["rejects_snapshot"])
    return sorted(recent), {t: ids - {None} for t, ids in window.items()}


def _expire(lake: Lakehouse, table: str, cutoff: dt.datetime, window: set[int]) -> tuple[list[int], list[int], int]:
    """Expire, by id, the snapshots older than `cutoff` that nothing keeps; returns (expired, kept, files deleted).

    By id, with `older_than` at the epoch: Iceberg then expires exactly these, and none by its own
    age rule (`history.expire.max-snapshot-age-ms`, 5 days by default, which knows nothing of the
    rollback window). It refuses to expire a snapshot a tag or branch points at.
    """
    session, name = lake.spark.session, lake.name(table)
    snapshots = {
        r["snapshot_id"]: (r["parent_id"], r["old"])
        for r in session.table(f"{name}.snapshots")
        .select("snapshot_id", "parent_id", (F.col("committed_at") < F.lit(cutoff)).alias("old"))
        .collect()
    }
    keep = window | _referenced(lake, table, {s: parent for s, (parent, _) in snapshots.items()})
    expired = sorted(s for s, (_, old) in snapshots.items() if old and s not in keep)
    deleted = 0
    if expired:
        ids = ", ".join(f"{s}L" for s in expired)
        row = session.sql(
            f"CALL {lake.spark.catalog}.system.expire_snapshots(table => '{lake.spark.namespace}.{table}',"
            f" older_than => TIMESTAMP '1970-01-01 00:00:00Z', snapshot_ids => array({ids}))"
        ).first()
        deleted = sum(int(v or 0) for v in (row.asDict().values() if row else ()))
    return expired, sorted(set(snapshots) - set(expired)), deleted


def _referenced(lake: Lakehouse, table: str, parents: dict[int, int | None]) -> set[int]:
    """Snapshots that stay whatever their age: the current one, every tag's and branch head's, and the
    commits of a branch other than main that main does not share (a write-audit branch not yet published)."""
    refs = lake.spark.session.table(f"{lake.name(table)}.refs").select("name", "type", "snapshot_id").collect()
    current = latest_snapshot(lake.spark, lake.name(table))
    keep = {r["snapshot_id"] for r in refs} | ({int(current["snapshot_id"])} if current else set())
    main = set(_ancestors(next((r["snapshot_id"] for r in refs if r["name"] == "main"), None), parents))
    for ref in refs:
        if ref["type"] == "BRANCH" and ref["name"] != "main":
            keep |= set(_ancestors(ref["snapshot_id"], parents, stop=main))
    return keep


def _ancestors(snapshot: int | None, parents: dict[int, int | None], stop: set[int] | None = None) -> list[int]:
    """`snapshot` and its ancestors (as far as they exist), up to the first one in `stop`."""
    out: list[int] = []
    while snapshot is not None and snapshot in parents and snapshot not in (stop or set()):
        out.append(snapshot)
        snapshot = parents[snapshot]
    return out


def _remove_orphans(lake: Lakehouse, table: str, before: dt.datetime) -> list[str]:
    """Delete the files under the table's location that no snapshot (or metadata file) names, older than `before`."""
    instant = before.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%fZ")
    rows = lake.spark.session.sql(
        f"CALL {lake.spark.catalog}.system.remove_orphan_files(table => '{lake.spark.namespace}.{table}',"
        f" older_than => TIMESTAMP '{instant}')"
    ).collect()
    return sorted(r["orphan_file_location"] for r in rows)


def _rewrite_files_with_deletes(lake: Lakehouse, table: str) -> dict[str, int]:
    """Rewrite every data file of the partitions that have delete files, and drop those deletes.

    Whole partitions, with new sequence numbers, so that no data file as old as their deletes
    stays behind and `remove-dangling-deletes` can drop them all; every partition's file group at
    once (Iceberg's default, 5 at a time, leaves the executors idle between small groups' jobs).
    Iceberg's position-delete rewrite cannot read tables with array columns, and its
    dangling-delete removal skips unpartitioned tables: an unpartitioned table (latest_summary) is
    rewritten whole instead.
    """
    session, name = lake.spark.session, lake.name(table)
    deletes = session.table(f"{name}.delete_files")
    if "partition" not in deletes.columns:
        if not deletes.limit(1).count():
            return {}
        session.table(name).writeTo(name).overwrite(F.lit(True))
        after = latest_snapshot(lake.spark, name) or {}
        return {
            "rewritten_data_files_count": int(after.get("deleted-data-files", 0)),
            "added_data_files_count": int(after.get("added-data-files", 0)),
            "removed_delete_files_count": int(after.get("removed-delete-files", 0)),
        }
    months = sorted(r[0] for r in deletes.select("partition.rpt_as_of_mo").distinct().collect())
    if not months:
        return {}
    row = session.sql(
        f"CALL {lake.spark.catalog}.system.rewrite_data_files(table => '{lake.spark.namespace}.{table}',"
        f' where => "rpt_as_of_mo IN ({", ".join(repr(m) for m in months)})",'
        " options => map('rewrite-all', 'true', 'remove-dangling-deletes', 'true',"
        f" 'use-starting-sequence-number', 'false', 'max-concurrent-file-group-rewrites', '{len(months)}'))"
    ).first()
    assert row is not None
    return {k: int(v or 0) for k, v in row.asDict().items()}
