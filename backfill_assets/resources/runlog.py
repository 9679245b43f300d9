"""The run log and lock (`backfill_runs`): each run's start with the snapshots before it, its outcome,
the refusal of a concurrent run, and the recovery of runs whose process died.
"""

from __future__ import annotations

import os
import socket

import dagster as dg
from pyspark.sql import Row
from pyspark.sql import functions as F

from backfill_assets.resources.lakehouse import RUNS_DDL, Lakehouse

STARTED, SUCCEEDED, FAILED, ROLLED_BACK, REFUSED = "STARTED", "SUCCEEDED", "FAILED", "ROLLED_BACK", "REFUSED"


def _log(lake: Lakehouse, run_id: str, event: str, error: str | None = None) -> None:
    summary, latest, rejects = (
        lake.snapshot_id(t) for t in (lake.summary_table, lake.latest_table, lake.rejects_table)
    )
    row = [(run_id, event, None, socket.gethostname(), os.getpid(), summary, latest, error, rejects)]
    entry = lake.spark.session.createDataFrame(row, RUNS_DDL).withColumn("at", F.current_timestamp())
    entry.writeTo(lake.name(lake.runs_table)).append()


def open_runs(lake: Lakehouse) -> list[Row]:
    """Runs that started and have no outcome yet, oldest first.

    The run log is a few rows per run: one plain scan, sorted out here, costs one Spark job
    where a NOT EXISTS query cost four (a run asks this up to five times).
    """
    log = lake.spark.session.table(lake.name(lake.runs_table)).collect()
    closed = {r["run_id"] for r in log if r["event"] != STARTED}
    started = [r for r in log if r["event"] == STARTED and r["run_id"] not in closed]
    return sorted(started, key=lambda r: (r["at"], r["run_id"]))


def begin_run(lake: Lakehouse, run_id: str) -> None:
    """Take the lock for `run_id`, recording the snapshots the tables have before it.

    First closes what dead runs left open (`recover`). Two runs that start together both write
    STARTED; the later one (by time, then run id) refuses, so at most one run ever commits.
    Idempotent: a later step of the same run finds its entry and goes on.
    """
    lake.ensure_tables()
    if any(r["run_id"] == run_id for r in open_runs(lake)):
        return
    recover(lake)
    _log(lake, run_id, STARTED)
    running = open_runs(lake)
    mine = next(r for r in running if r["run_id"] == run_id)
    earlier = [r for r in running if (r["at"], r["run_id"]) < (mine["at"], run_id)]
    if earlier:
        other = earlier[0]
        reason = (
            f"another backfill run is in progress: run {other['run_id']} (host {other['host']}, pid {other['pid']},"
            f" started {other['at']}); this run waits for nothing and changes nothing: start it again when that"
            " one has finished"
        )
        _log(lake, run_id, REFUSED, reason)
        raise dg.Failure(reason)


def end_run(lake: Lakehouse, run_id: str, ok: bool, error: str | None = None) -> None:
    """Record the outcome; a failed run's tables go back to the snapshots they had when it began."""
    mine = [r for r in open_runs(lake) if r["run_id"] == run_id]
    if not mine:
        return
    if not ok:
        _restore(lake, mine[0])
    _log(lake, run_id, SUCCEEDED if ok else FAILED, error)


def _restore(lake: Lakehouse, run: Row) -> None:
    """Put back the snapshots the run began with: summary, latest_summary, and the rejects it recorded."""
    lake.rollback(
        {
            lake.summary_table: run["summary_snapshot"],
            lake.latest_table: run["latest_snapshot"],
            lake.rejects_table: run["rejects_snapshot"],
        }
    )


def recover(lake: Lakehouse) -> list[str]:
    """Close the open runs whose process is gone (killed, lost driver), restoring their tables and rejects.

    A run whose watermark row exists had committed everything: it is marked SUCCEEDED. Any other
    goes back to the snapshots recorded when it began (ROLLED_BACK); nothing else can have
    committed since, because it held the lock. Runs of other hosts are left to those hosts.
    Returns the run ids rolled back.
    """
    if not lake.spark.session.catalog.tableExists(lake.name(lake.runs_table)):
        return []
    lake.ensure_tables()  # a warehouse from before rejects were kept: their table and column first
    rolled_back = []
    for run in open_runs(lake):
        if run["host"] != socket.gethostname() or _alive(run["pid"]):
            continue
        state = lake.spark.session.table(lake.name(lake.state_table))
        if state.where(F.col("run_id") == run["run_id"]).limit(1).count():
            _log(lake, run["run_id"], SUCCEEDED, "closed after its process died (its commit was complete)")
            continue
        _restore(lake, run)
        _log(lake, run["run_id"], ROLLED_BACK, f"process {run['pid']} died before its outcome: tables restored")
        rolled_back.append(run["run_id"])
    return rolled_back


def _alive(pid: int) -> bool:
    """Whether a process of this host runs; our own pid counts as gone (an earlier in-process run died)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
