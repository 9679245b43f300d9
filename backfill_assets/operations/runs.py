"""The run log read back: one `RunSummary` per run, newest first (`backfill-assets runs`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from backfill_assets.contracts.tables import CASES
from backfill_assets.operations import Refused
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.runlog import OUTCOMES, STARTED, SUCCEEDED

OPEN = "OPEN"  # the outcome of a run that has only its STARTED entry
Snapshots = tuple[int | None, int | None]  # (summary, latest_summary)
Entry = dict[str, Any]


@dataclass(frozen=True)
class RunSummary:
    """One run as the run log and `backfill_state` know it."""

    run_id: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    outcome: str  # SUCCEEDED, FAILED, ROLLED_BACK, REFUSED or OPEN
    host: str | None
    pid: int | None
    records_by_case: dict[str, int] | None  # None: not recorded (open, closed by recover/unlock, older log)
    rejected: int | None
    summary_rows_written: int | None
    before: Snapshots  # the snapshots when it started (its STARTED entry)
    after: Snapshots  # the snapshots it committed (backfill_state), else those it left (its outcome entry)
    error: str | None


def run_log(lake: Lakehouse, limit: int | None = None) -> list[RunSummary]:
    """Every run of the log, newest first (by start), at most `limit`. Two small scans: the log and the state."""
    session = lake.spark.session
    if not session.catalog.tableExists(lake.name(lake.runs_table)):
        return []
    entries: dict[str, list[Entry]] = {}
    for entry in session.table(lake.name(lake.runs_table)).collect():  # an older log lacks the counts: .get
        entries.setdefault(entry["run_id"], []).append(entry.asDict())
    committed: dict[str, Entry] = {}
    if session.catalog.tableExists(lake.name(lake.state_table)):
        committed = {r["run_id"]: r.asDict() for r in session.table(lake.name(lake.state_table)).collect()}
    runs = [_summary(run_id, rows, committed.get(run_id)) for run_id, rows in entries.items()]
    runs.sort(key=lambda r: (r.started_at or dt.datetime.min, r.run_id), reverse=True)
    return runs[:limit] if limit else runs


def _summary(run_id: str, entries: list[Entry], state: Entry | None) -> RunSummary:
    started = next((e for e in entries if e["event"] == STARTED), None)
    outcomes = sorted((e for e in entries if e["event"] in OUTCOMES), key=lambda e: e["at"])
    end = outcomes[-1] if outcomes else None
    counted = end is not None and end.get("records_i") is not None
    if state is not None:
        after: Snapshots = (state["summary_snapshot"], state["latest_snapshot"])
    else:
        after = (end["summary_snapshot"], end["latest_snapshot"]) if end is not None else (None, None)
    return RunSummary(
        run_id=run_id,
        started_at=started["at"] if started else None,
        ended_at=end["at"] if end else None,
        outcome=end["event"] if end else OPEN,
        host=started["host"] if started else None,
        pid=started["pid"] if started else None,
        records_by_case={c: int(end[f"records_{c.lower()}"]) for c in CASES} if end is not None and counted else None,
        rejected=end.get("rejected") if end is not None else None,
        summary_rows_written=end.get("summary_rows_written") if end is not None else None,
        before=(started["summary_snapshot"], started["latest_snapshot"]) if started else (None, None),
        after=after,
        error=end["error"] if end else None,
    )


def committed_run(lake: Lakehouse, run_id: str) -> RunSummary:
    """The run `run_id` if it committed (SUCCEEDED); `Refused` if the log does not have it or it committed nothing."""
    run = next((r for r in run_log(lake) if r.run_id == run_id), None)
    if run is None:
        raise Refused(f"run {run_id} is not in the run log {lake.name(lake.runs_table)}")
    if run.outcome != SUCCEEDED:
        state = "is still open" if run.outcome == OPEN else f"ended {run.outcome}"
        raise Refused(f"run {run_id} {state}: it committed nothing to compare")
    if None in run.before:
        raise Refused(f"run {run_id} has no snapshots recorded at its start")
    return run
