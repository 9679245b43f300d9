"""The run log and lock (`backfill_runs`): each run's start with the snapshots before it, the start of
its publish (`resources.publish`), its outcome, the refusal of a concurrent run, and the recovery of
runs whose process died: forward when their publish had begun, back otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass

import dagster as dg
from pyspark.sql import Row
from pyspark.sql import functions as F

from backfill_assets.contracts.tables import CASES
from backfill_assets.resources.lakehouse import RUNS_DDL, Lakehouse
from backfill_assets.resources.publish import Commit, Heads, branch, drop_branches, publish, tag
from backfill_assets.resources.spark import latest_snapshot, snapshot_by_id

STARTED, SUCCEEDED, FAILED, ROLLED_BACK, REFUSED = "STARTED", "SUCCEEDED", "FAILED", "ROLLED_BACK", "REFUSED"
# the write checks passed: the branches' heads (and the watermark) are published, by the run or by recovery
PUBLISHING = "PUBLISHING"
OUTCOMES = (SUCCEEDED, FAILED, ROLLED_BACK, REFUSED)


@dataclass(frozen=True)
class Applied:
    """What a successful run applied, recorded with its outcome (`backfill-assets runs`)."""

    by_case: dict[str, int]
    summary_rows_written: int


NOTHING = Applied({c: 0 for c in CASES}, 0)


@dataclass(frozen=True)
class Published:
    """What a run publishes once its write checks passed: its branches' heads and the watermark after it."""

    heads: Heads
    applied_through: dt.datetime


def _log(
    lake: Lakehouse,
    run_id: str,
    event: str,
    error: str | None = None,
    applied: Applied | None = None,
    rejected: int | None = None,
    published: Published | None = None,
) -> None:
    """One entry with the tables' `main` snapshots; a PUBLISHING entry holds the heads it publishes instead,
    with the branch and the watermark, and a published run's SUCCEEDED entry names its tag."""
    summary, latest, rejects = (
        lake.snapshot_id(t) for t in (lake.summary_table, lake.latest_table, lake.rejects_table)
    )
    refs: tuple[str | None, str | None, dt.datetime | None] = (None, None, None)
    if published is not None and event == PUBLISHING:
        summary, latest = published.heads.summary, published.heads.latest
        refs = (branch(run_id), None, published.applied_through)
    elif published is not None:
        refs = (None, tag(run_id), None)
    by_case = [applied.by_case.get(c, 0) if applied else None for c in CASES]
    written = applied.summary_rows_written if applied else None
    host, pid = socket.gethostname(), os.getpid()
    row = [(run_id, event, None, host, pid, summary, latest, error, rejects, *by_case, rejected, written, *refs)]
    entry = lake.spark.session.createDataFrame(row, RUNS_DDL).withColumn("at", F.current_timestamp())
    entry.writeTo(lake.name(lake.runs_table)).append()


def _entries(lake: Lakehouse) -> list[Row]:
    """The whole run log: a few rows per run, one plain scan (sorted out in Python: one Spark job where
    a NOT EXISTS query cost four; a run asks this several times)."""
    return lake.spark.session.table(lake.name(lake.runs_table)).collect()


def open_runs(lake: Lakehouse, log: list[Row] | None = None) -> list[Row]:
    """The STARTED entries of runs that have no outcome yet, oldest first."""
    log = _entries(lake) if log is None else log
    closed = {r["run_id"] for r in log if r["event"] in OUTCOMES}
    started = [r for r in log if r["event"] == STARTED and r["run_id"] not in closed]
    return sorted(started, key=lambda r: (r["at"], r["run_id"]))


def _publishing(log: list[Row], run_id: str) -> Published | None:
    """What the run began to publish (its PUBLISHING entry), None if its write checks never passed."""
    entry = next((r for r in log if r["run_id"] == run_id and r["event"] == PUBLISHING), None)
    if entry is None:
        return None
    return Published(Heads(entry["summary_snapshot"], entry["latest_snapshot"]), entry["applied_through"])


def _before(started: Row) -> Heads:
    return Heads(started["summary_snapshot"], started["latest_snapshot"])


def begin_run(lake: Lakehouse, run_id: str) -> None:
    """Take the lock for `run_id`, recording the snapshots the tables have before it.

    First closes what dead runs left open (`recover`). Two runs that start together both write
    STARTED; the later one (by time, then run id) refuses, so at most one run ever commits.
    Idempotent: a later step of the same run finds its entry and goes on.
    """
    lake.ensure_tables()
    log = _entries(lake)  # read once for both questions: a dead run's closing changes no other run's entries
    if any(r["run_id"] == run_id for r in open_runs(lake, log)):
        return
    _close_dead(lake, log)
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
        _log(lake, run_id, REFUSED, reason, NOTHING, 0)
        raise dg.Failure(reason)


def publish_run(lake: Lakehouse, run_id: str, published: Published) -> Commit:
    """Log PUBLISHING, then publish (`publish.publish`): from here on the run only goes forward.

    A failure or a kill after this entry is completed by `end_run` or by recovery from what the
    entry holds, so `main` of the two tables never stays half-published or goes half back.
    """
    [started] = [r for r in open_runs(lake) if r["run_id"] == run_id]
    _log(lake, run_id, PUBLISHING, published=published)
    return publish(lake, run_id, published.heads, published.applied_through, _before(started))


def end_run(lake: Lakehouse, run_id: str, ok: bool, error: str | None = None, applied: Applied | None = None) -> None:
    """Record the outcome; a failed run's tables go back to the snapshots they had when it began.

    A successful run records what it applied (`applied`: records per case, summary rows written)
    and the records it rejected (the rows it added to the rejects table, from the snapshots'
    counters: no Spark job); a failed one applied and rejected nothing. A run that failed while
    publishing is published to the end instead (`_complete`).
    """
    log = _entries(lake)
    mine = [r for r in open_runs(lake, log) if r["run_id"] == run_id]
    if not mine:
        return
    published = _publishing(log, run_id)
    if not ok and published is not None:
        _complete(lake, mine[0], published, f"publish completed after: {error}")
    elif not ok:
        _restore(lake, mine[0])
        _log(lake, run_id, FAILED, error, NOTHING, 0)
    else:
        rejected = _rows_added(lake, lake.rejects_table, mine[0]["rejects_snapshot"])
        _log(lake, run_id, SUCCEEDED, error, applied, rejected, published)


def _complete(lake: Lakehouse, started: Row, published: Published, why: str) -> None:
    """Finish the publish a run began (each step of `publish` is skipped when done) and mark it SUCCEEDED."""
    publish(lake, started["run_id"], published.heads, published.applied_through, _before(started))
    _log(lake, started["run_id"], SUCCEEDED, why, published=published)


def _rows_added(lake: Lakehouse, table: str, since: int | None) -> int:
    """Rows appended to an append-only table after snapshot `since`, from the snapshots' `total-records`."""
    now = latest_snapshot(lake.spark, lake.name(table)) or {}
    before = snapshot_by_id(lake.spark, lake.name(table), since) if since is not None else None
    return int(now.get("total-records", 0)) - int((before or {}).get("total-records", 0))


def _restore(lake: Lakehouse, run: Row) -> None:
    """Drop the run's unpublished branches and put back the snapshots it began with (summary and
    latest_summary, which a run before write-audit-publish committed to directly, and the rejects)."""
    drop_branches(lake, run["run_id"])
    lake.rollback(
        {
            lake.summary_table: run["summary_snapshot"],
            lake.latest_table: run["latest_snapshot"],
            lake.rejects_table: run["rejects_snapshot"],
        }
    )


def recover(lake: Lakehouse) -> list[str]:
    """Close the open runs of this host whose process is gone (killed, lost driver) with `close_run`.

    Runs of other hosts are left to those hosts (or to `backfill-assets unlock`). Returns the run
    ids rolled back.
    """
    if not lake.spark.session.catalog.tableExists(lake.name(lake.runs_table)):
        return []
    lake.ensure_tables()  # a warehouse from before rejects were kept: their table and column first
    return _close_dead(lake, _entries(lake))


def _close_dead(lake: Lakehouse, log: list[Row]) -> list[str]:
    """`recover` with the run log as read (`log`); returns the run ids rolled back."""
    rolled_back = []
    for run in open_runs(lake, log):
        if run["host"] != socket.gethostname() or _alive(run["pid"]):
            continue
        if close_run(lake, run, f"process {run['pid']} died before its outcome", log) == ROLLED_BACK:
            rolled_back.append(run["run_id"])
    return rolled_back


def close_run(lake: Lakehouse, run: Row, why: str, log: list[Row] | None = None) -> str:
    """Close an open run whose process is gone, as the next run on its host would; returns the outcome.

    A run that began to publish (its write checks had passed) is published to the end: SUCCEEDED.
    So is a run whose watermark row exists (a release before write-audit-publish committed in
    place). Any other goes back to the snapshots recorded when it began (ROLLED_BACK), its branches
    dropped and its rejects with it; nothing else can have committed since, because it held the lock.
    `log`: the run log, if the caller has read it since the run's process ended.
    """
    published = _publishing(_entries(lake) if log is None else log, run["run_id"])
    if published is not None:
        _complete(lake, run, published, f"{why}: its publish was completed")
        return SUCCEEDED
    state = lake.spark.session.table(lake.name(lake.state_table))
    if state.where(F.col("run_id") == run["run_id"]).limit(1).count():
        _log(lake, run["run_id"], SUCCEEDED, f"{why} (its commit was complete)")
        return SUCCEEDED
    _restore(lake, run)
    _log(lake, run["run_id"], ROLLED_BACK, f"{why}: tables restored", NOTHING, 0)
    return ROLLED_BACK


def unlock(lake: Lakehouse, run_id: str) -> str:
    """Close the open run `run_id` left by a process that is gone (`close_run`); returns the outcome.

    For a run of another host the operator vouches that its process is gone; a run of this host is
    closed only if its process is. Raises `RunNotClosable` when the run is not open or still alive.
    """
    lake.ensure_tables()
    run = next((r for r in open_runs(lake) if r["run_id"] == run_id), None)
    if run is None:
        raise RunNotClosable(f"run {run_id} is not open: the run log has no such run, or it already has an outcome")
    host = socket.gethostname()
    if run["host"] == host and _alive(run["pid"]):
        raise RunNotClosable(
            f"run {run_id} is still running: its process {run['pid']} is alive on this host ({host}); nothing changed"
        )
    return close_run(lake, run, f"unlocked from host {host}: process {run['pid']} of host {run['host']} gone")


class RunNotClosable(Exception):
    """`unlock` refused: the run is not open, or its process is alive on this host."""


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
