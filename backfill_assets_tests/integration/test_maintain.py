"""`maintain` (docs/spec.md §6): compaction, snapshot expiry outside the rollback window, orphan files.

One warehouse for the module, with 20 runs as `maintain` sees them. Runs 1–19 are cheap: each makes a
real commit to summary and latest_summary (one new account), and their run-log entries (STARTED with
the snapshots before, SUCCEEDED) and `backfill_state` rows (the snapshots committed) are then written
in one append each, in the shape `begin_run`, `end_run` and a publish write them. Run 20 is a real one
through `begin_run`, a write to its branch (a MERGE that updates a row: delete files for the
compaction), its publish and `end_run`. Runs 3 and 15 are tagged `run-<id>`, as write-audit-publish runs are, and
a branch gets a commit of its own. Nobody waits a week: `maintain` runs with `now` a week after an
instant taken between runs 10 and 11, so runs 11–20 are the rollback window.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from backfill_assets import cli
from backfill_assets.resources.lakehouse import RUNS_DDL, STATE_DDL
from backfill_assets.resources.maintenance import Upkeep, maintain
from backfill_assets.resources.publish import write
from backfill_assets.resources.runlog import Published, begin_run, end_run, open_runs, publish_run, unlock
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import ROW_TS, SUMMARY, Lake, frame, summary_row

RUNS, KEEP_DAYS, MONTH = 20, 7, "2024-01"
TABLES = ("summary", "latest_summary")
OURS = ("summary", "latest_summary", "backfill_state", "backfill_runs", "backfill_rejects")
OLD_TAG, NEW_TAG, BRANCH = "run-cheap-03", "run-cheap-15", "audit_cheap"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Run:
    run_id: str
    started: dict[str, int]  # summary, latest_summary, backfill_rejects -> the snapshot before the run
    committed: dict[str, int]  # summary, latest_summary -> the snapshot the run committed
    began: dt.datetime
    ended: dt.datetime


@dataclass
class Maintained:
    lake: Lake
    runs: list[Run]
    before: dict[str, dict[int, bool]]  # table -> snapshot id -> older than the cut-off, before maintain
    kept: dict[str, set[int]]  # table -> what must stay: the window's, tagged, the branch's, current
    prints: dict[str, dict[Any, tuple[Any, ...]]]  # table -> snapshot or tag -> fingerprint before maintain
    rows: dict[str, list[tuple[Any, ...]]]  # table -> its rows before maintain
    upkeep: Upkeep

    def expected_expired(self, table: str) -> set[int]:
        return {s for s, old in self.before[table].items() if old and s not in self.kept[table]}


def cheap_run(lake: Lake, i: int) -> Run:
    """A run's commits: account 100 + i (and 1 in the first) appended to summary and latest_summary."""
    began = now()
    started = {t: lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_rejects")}
    new = frame(lake.spark, [summary_row(100 + i, MONTH)] + ([summary_row(1, MONTH)] if i == 1 else []), SUMMARY)
    for table in TABLES:
        new.writeTo(lake.table(table)).append()
    committed = {t: lake.snapshot(t) for t in TABLES}
    return Run(f"cheap-{i:02d}", started, committed, began, now())  # type: ignore[arg-type]


def record(lake: Lake, runs: list[Run]) -> None:
    """The runs' run-log entries and backfill_state rows, one append each."""
    host, pid = socket.gethostname(), os.getpid()
    log, state = [], []
    for i, r in enumerate(runs, 1):
        before = (r.started["summary"], r.started["latest_summary"], None, r.started["backfill_rejects"])
        after = (r.committed["summary"], r.committed["latest_summary"], None, r.started["backfill_rejects"])
        log.append((r.run_id, "STARTED", r.began, host, pid, *before, *[None] * 9))
        log.append((r.run_id, "SUCCEEDED", r.ended, host, pid, *after, 1, 0, 0, 0, 0, 1, None, None, None))
        state.append((ROW_TS + dt.timedelta(seconds=i), r.run_id, r.ended, *after[:2]))
    lake.spark.createDataFrame(log, RUNS_DDL).writeTo(lake.table("backfill_runs")).append()
    lake.spark.createDataFrame(state, STATE_DDL).writeTo(lake.table("backfill_state")).append()


def real_run(lake: Lake, i: int) -> Run:
    """A run through the lock and the commit: account 1 updated (a position delete), account 100 + i new.

    It writes summary only (one MERGE is the costly part of a run): latest_summary stays where it was.
    """
    run_id, began = f"cheap-{i:02d}", now()
    begin_run(lake.lakehouse, run_id)
    started = {t: lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_rejects")}
    rows = frame(
        lake.spark, [summary_row(1, MONTH, base_ts=ROW_TS + dt.timedelta(days=1)), summary_row(100 + i, MONTH)], SUMMARY
    )
    heads, _ = write(lake.lakehouse, run_id, rows, None, (MONTH, MONTH))
    commit = publish_run(lake.lakehouse, run_id, Published(heads, ROW_TS + dt.timedelta(seconds=i)))
    end_run(lake.lakehouse, run_id, ok=True)
    committed = {"summary": commit.summary_snapshot, "latest_summary": commit.latest_snapshot}
    return Run(run_id, started, committed, began, now())  # type: ignore[arg-type]


def snapshots(lake: Lake, table: str, before: dt.datetime | None = None) -> dict[int, bool]:
    """Snapshot id -> whether it is older than `before`."""
    old = F.col("committed_at") < F.lit(before) if before else F.lit(False)
    rows = lake.spark.table(f"{lake.table(table)}.snapshots").select("snapshot_id", old).collect()
    return {r[0]: r[1] for r in rows}


def fingerprints(lake: Lake, table: str, versions: list[Any]) -> dict[Any, tuple[Any, ...]]:
    """The rows, accounts and newest base_ts at each version (a snapshot id or a tag), read in one query.

    Sums, not counts alone: a count can come from the metadata, these need the data files.
    """
    parts = [
        f"SELECT {v!r} AS v, count(*), sum(cons_acct_key), max(base_ts) FROM {lake.table(table)} VERSION AS OF {v!r}"
        for v in versions
    ]
    return {r[0]: tuple(r[1:]) for r in lake.spark.sql(" UNION ALL ".join(parts)).collect()}


def contents(lake: Lake, table: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in lake.spark.table(lake.table(table)).collect())


def current_rows(lake: Lake) -> dict[str, list[tuple[Any, ...]]]:
    return {t: contents(lake, t) for t in ("summary", "latest_summary", "backfill_state", "backfill_rejects")}


@pytest.fixture(scope="module")
def maintained(spark: SparkSession, spark_resource: SparkIceberg) -> Iterator[Maintained]:
    lake = Lake(spark, spark_resource)
    lake.lakehouse.ensure_tables()
    runs: list[Run] = []
    for i in range(1, RUNS):
        runs.append(cheap_run(lake, i))
        if i == 5:  # a branch with a commit of its own (a write-audit branch not published), forked from run 5
            lake.spark.sql(f"ALTER TABLE {lake.table('summary')} CREATE BRANCH {BRANCH}")
            on_branch = frame(lake.spark, [summary_row(999, MONTH)], SUMMARY)
            on_branch.writeTo(f"{lake.table('summary')}.branch_{BRANCH}").append()
        if i == RUNS // 2:
            time.sleep(0.05)
            mid = now()
            time.sleep(0.05)
    record(lake, runs)
    runs.append(real_run(lake, RUNS))
    for tag, run in ((OLD_TAG, runs[2]), (NEW_TAG, runs[14])):
        for table in TABLES:
            lake.spark.sql(f"ALTER TABLE {lake.table(table)} CREATE TAG `{tag}` AS OF VERSION {run.committed[table]}")
    window = runs[RUNS // 2 :]
    kept: dict[str, set[int]] = {t: {lake.snapshot(t)} for t in OURS}  # type: ignore[misc]
    for t in OURS:
        kept[t] |= {s for r in window for s in (r.started.get(t), r.committed.get(t)) if s is not None}
    for table in TABLES:
        kept[table].add(runs[2].committed[table])  # the old tag
    branch_head = lake.spark.sql(f"SELECT snapshot_id FROM {lake.table('summary')}.refs WHERE name = '{BRANCH}'")
    kept["summary"].add(branch_head.first()[0])  # type: ignore[index]
    before = {t: snapshots(lake, t, mid) for t in OURS}
    prints = {t: fingerprints(lake, t, [*sorted(kept[t]), OLD_TAG, NEW_TAG]) for t in TABLES}
    rows = current_rows(lake)
    upkeep = maintain(lake.lakehouse, "maintain-window", KEEP_DAYS, now=mid + dt.timedelta(days=KEEP_DAYS))
    yield Maintained(lake, runs, before, kept, prints, rows, upkeep)


def test_the_window_and_the_tags_stay_readable_and_unchanged(maintained: Maintained) -> None:
    m = maintained
    for table in TABLES:
        versions = [*sorted(m.kept[table]), OLD_TAG, NEW_TAG]
        assert fingerprints(m.lake, table, versions) == m.prints[table], table
        assert set(snapshots(m.lake, table)) >= m.kept[table]
    assert m.upkeep.window_runs == sorted([*(r.run_id for r in m.runs[RUNS // 2 :]), "maintain-window"])
    branch = m.lake.spark.read.option("branch", BRANCH).table(m.lake.table("summary"))
    assert branch.where("cons_acct_key = 999").count() == 1  # the branch's own commit


def test_everything_else_older_than_the_window_is_expired(maintained: Maintained) -> None:
    m = maintained
    by_table = {t.table: t for t in m.upkeep.tables}
    assert set(by_table) == set(OURS)  # no intermediate table exists here; accounts_all is never touched
    for table in OURS:
        expired = m.expected_expired(table)
        after = set(snapshots(m.lake, table))
        assert not after & expired, table
        assert by_table[table].expired == sorted(expired), table
        # kept: the rest; after it only what maintain wrote itself (compaction, its run-log entries)
        assert set(by_table[table].kept) <= after and not (after - set(by_table[table].kept)) & set(m.before[table])
    # what the window decides: run 11 started from run 10's commit, old but kept; runs 1-9 (but the tag) went
    assert len(m.expected_expired("summary")) >= 7
    assert m.runs[9].committed["summary"] not in m.expected_expired("summary")
    assert m.runs[8].committed["summary"] in m.expected_expired("summary")
    # compaction ran first: merge-on-read runs left deletes, maintain merged them
    assert by_table["summary"].compaction["rewritten_data_files_count"] > 0
    assert m.lake.spark.table(f"{m.lake.table('summary')}.delete_files").count() == 0


def test_the_tables_are_unchanged_row_for_row(maintained: Maintained) -> None:
    assert current_rows(maintained.lake) == maintained.rows
    assert open_runs(maintained.lake.lakehouse) == []  # the lock was released


def ghost(lake: Lake, run_id: str) -> None:
    """A STARTED entry of a run whose process is on another host: it holds the lock."""
    snaps = [lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_rejects")]
    row = (run_id, "STARTED", None, "another-host.example", 4242, snaps[0], snaps[1], None, snaps[2], *[None] * 9)
    entry = lake.spark.createDataFrame([row], RUNS_DDL).withColumn("at", F.current_timestamp())
    entry.writeTo(lake.table("backfill_runs")).append()


def call(lake: Lake, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv), spark=lake.resource)
    out = capsys.readouterr()
    return code, out.out, out.err


def table_files(lake: Lake) -> list[Path]:
    """Every file of our tables but the run log (a refused run is logged there)."""
    root = Path(str(lake.resource.warehouse)) / lake.resource.namespace
    return sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "backfill_runs")


def test_refused_while_another_run_holds_the_lock(maintained: Maintained, capsys: pytest.CaptureFixture[str]) -> None:
    lake = maintained.lake
    ghost(lake, "ghost-holder")
    snaps, files = {t: snapshots(lake, t) for t in OURS if t != "backfill_runs"}, table_files(lake)
    for command in ("maintain", "compact"):
        code, out, err = call(lake, capsys, command)
        assert code == 2 and not out and len(err.splitlines()) == 1, (code, err)
        refusal = f"backfill-assets: {command} refused: another backfill run is in progress: run ghost-holder"
        assert err.startswith(refusal)
    assert {t: snapshots(lake, t) for t in snaps} == snaps and table_files(lake) == files
    assert unlock(lake.lakehouse, "ghost-holder") == "ROLLED_BACK"  # a no-op: nothing moved since it "began"
    assert current_rows(lake) == maintained.rows


def test_the_command_prints_each_table_and_removes_old_orphan_files(
    maintained: Maintained, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = maintained.lake
    path = lake.spark.table(f"{lake.table('summary')}.files").select("file_path").first()[0]  # type: ignore[index]
    data = Path(path.removeprefix("file:")).parent
    old, fresh = data / "orphan-old.parquet", data / "orphan-fresh.parquet"
    for orphan in (old, fresh):
        orphan.write_bytes(b"left by a write that never committed")
    four_days_ago = time.time() - 4 * 86400  # older than the protection age (3 days)
    os.utime(old, (four_days_ago, four_days_ago))

    code, out, err = call(lake, capsys, "maintain")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(": ")[0] for line in lines[:-1]] == [lake.table(t) for t in OURS]
    assert lines[0].endswith("removed 1 orphan files") and all(line.endswith(" 0 orphan files") for line in lines[1:-1])
    assert lines[-1].startswith("kept the snapshots since ") and f"({KEEP_DAYS} days)" in lines[-1]
    assert not old.exists() and fresh.exists()  # a young file may be a write in flight

    code, out, err = call(lake, capsys, "maintain", "--json", "--keep-days", "3")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"keep_days", "expired_before", "orphans_before", "window_runs", "tables"}
    assert doc["keep_days"] == 3 and doc["expired_before"].endswith("+00:00") and "cheap-20" in doc["window_runs"]
    tables = {t["table"]: t for t in doc["tables"]}
    assert list(tables) == list(OURS)
    for table, t in tables.items():
        assert set(t) == {
            "table",
            "compaction",
            "snapshots_expired",
            "snapshots_kept",
            "files_deleted",
            "orphan_files_removed",
        }
        assert t["snapshots_expired"] == [] and t["orphan_files_removed"] == []  # nothing is 3 days old here
        now_there = set(snapshots(lake, table))  # the run log has one more: maintain's own outcome
        assert (
            set(t["snapshots_kept"]) == now_there
            if table != "backfill_runs"
            else len(now_there - set(t["snapshots_kept"])) == 1
        )
    assert fresh.exists()
    fresh.unlink()
    assert call(lake, capsys, "maintain", "--keep-days", "0")[0] == 2  # refused before Spark is asked anything
    assert current_rows(lake) == maintained.rows


def test_the_dagster_job_maintains_the_tables(maintained: Maintained) -> None:
    lake = maintained.lake
    job = lake.defs.resolve_job_def("maintain_job")
    result = job.execute_in_process(
        instance=lake.instance, run_config={"ops": {"maintain_tables": {"config": {"keep_days": 2}}}}
    )
    assert result.success
    log = lake.spark.table(lake.table("backfill_runs")).where(F.col("run_id") == f"maintain-{result.run_id}")
    assert sorted(r["event"] for r in log.collect()) == ["STARTED", "SUCCEEDED"]
    assert current_rows(lake) == maintained.rows
