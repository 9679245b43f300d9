"""The operator's commands `runs`, `diff`, `explain` and `unlock` (docs/spec.md §6), in-process.

One warehouse for the module: a history run, a late run (corrections, a tie-break, a deletion, a
gap fill, a forward month, new accounts, a rejected record), a run that applies nothing (only a bad
record) and a run refused by an open run of another host; then the commands are checked against
the reference model, and `unlock` closes runs left open on "another host" (entries written here).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from backfill_assets import cli
from backfill_assets.contracts.tables import CASES
from backfill_assets.operations.runs import run_log
from backfill_assets.resources.lakehouse import RUNS_DDL, STATE_DDL, Lakehouse
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.transforms.months import add_months, month_range
from backfill_assets_tests.fixtures import HISTORIES, Lake, next_ts, record
from backfill_assets_tests.reference_model import deleted

MONTHS = month_range("2025-12", "2026-05")  # near the last partition: runs cover few months
FORWARD = "2026-06"  # not after the month of the records' base_ts (fixtures.T0)
M = MONTHS
OTHER_HOST = "another-host.example"
Model = dict[Any, dict[str, Any]]


@dataclass
class History:
    lake: Lake
    runs: dict[str, str]  # history, late, nothing, refused -> run id
    before: tuple[Model, Model]  # the model's summary and latest before the late run
    after: tuple[Model, Model]  # … and after it


def ghost(lake: Lake, run_id: str, host: str = OTHER_HOST, pid: int = 4242) -> None:
    """A STARTED entry of a run whose process is elsewhere, at the tables' current snapshots."""
    snapshots = [lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_rejects")]
    row = (run_id, "STARTED", None, host, pid, snapshots[0], snapshots[1], None, snapshots[2], *[None] * 9)
    entry = lake.spark.createDataFrame([row], RUNS_DDL).withColumn("at", F.current_timestamp())
    entry.writeTo(lake.table("backfill_runs")).append()


@pytest.fixture(scope="module")
def history(spark: SparkSession, spark_resource: SparkIceberg) -> Iterator[History]:
    lake = Lake(spark, spark_resource, DataQuality(max_rejected_share=1.0))
    lake.deliver(
        record(a, m, acct_bal_am=100 * a + i) for a in (1, 2, 3, 4) for i, m in enumerate(MONTHS) if (a, m) != (3, M[2])
    )
    runs = {"history": lake.run().run_id}
    before = (copy.deepcopy(lake.model.summary()), copy.deepcopy(lake.model.latest()))
    bad = record(0, M[4], acct_bal_am=13)
    bad["cons_acct_key"] = None
    lake.deliver([bad], to_model=False)
    tie = next_ts()
    lake.deliver(
        [
            record(1, M[1], acct_bal_am=9002, acct_credit_ext_am=None),  # correction, NULL over a value
            record(1, M[2], tie, acct_bal_am=1, insert_ts=dt.datetime(2026, 1, 1)),  # tie: loses
            record(1, M[2], tie, acct_bal_am=2, insert_ts=dt.datetime(2026, 1, 2)),  # tie: wins
            record(2, M[3], soft_del_cd="4"),  # deletion
            record(3, M[2], acct_bal_am=5555, days_past_due_ct_4in=95),  # gap fill
            record(4, FORWARD, acct_bal_am=407),  # forward month (case II)
            record(5, M[4]),  # new account (case I)
            record(6, M[3]),  # new account with history (case IV)
            record(6, M[4]),
        ]
    )
    runs["late"] = lake.run().run_id
    lake.assert_matches_model()
    after = (copy.deepcopy(lake.model.summary()), copy.deepcopy(lake.model.latest()))
    worse = record(0, M[5], acct_bal_am=14)
    worse["cons_acct_key"] = None
    lake.deliver([worse], to_model=False)
    runs["nothing"] = lake.run().run_id  # only a rejected record: applies nothing
    ghost(lake, "ghost-blocker")
    lake.deliver([record(1, M[5], acct_bal_am=6)], to_model=False)
    refused = lake.try_run()
    assert not refused.success and refused.run_id
    runs["refused"] = refused.run_id
    lake.assert_matches_model()
    yield History(lake, runs, before, after)


def call(lake: Lake, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv), spark=lake.resource)
    out = capsys.readouterr()
    return code, out.out, out.err


def ok(lake: Lake, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = call(lake, capsys, *argv)
    assert code == 0, err
    return out


def refused(lake: Lake, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """A refusal: exit status 2 and one line `backfill-assets: …` on stderr."""
    code, _, err = call(lake, capsys, *argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("backfill-assets: "), (code, err)
    return err.strip()


def utc(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


# ------------------------------------------------------------------------------------------------ runs


def test_runs_lists_outcomes_counts_snapshots_and_errors(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    lake, ids = history.lake, history.runs
    runs = json.loads(ok(lake, capsys, "runs", "--json"))
    assert [r["run_id"] for r in runs] == [ids["refused"], "ghost-blocker", ids["nothing"], ids["late"], ids["history"]]
    assert {tuple(r) for r in runs} == {
        (
            "run_id",
            "started_at",
            "ended_at",
            "outcome",
            "records_by_case",
            "rejected",
            "summary_rows_written",
            "summary_snapshot_id",
            "latest_snapshot_id",
            "error",
        )
    }
    by_id = {r["run_id"]: r for r in runs}
    assert [by_id[ids[k]]["outcome"] for k in ("history", "late", "nothing", "refused")] == [
        "SUCCEEDED",
        "SUCCEEDED",
        "SUCCEEDED",
        "REFUSED",
    ]
    assert by_id["ghost-blocker"]["outcome"] == "OPEN" and by_id["ghost-blocker"]["ended_at"] is None
    first, late, nothing, refusal = (by_id[ids[k]] for k in ("history", "late", "nothing", "refused"))
    assert first["records_by_case"] == {"I": 0, "II": 0, "III": 0, "IV": 23}
    assert first["summary_rows_written"] == 23 and first["rejected"] == 0
    assert late["records_by_case"] == {"I": 1, "II": 1, "III": 4, "IV": 2}
    assert late["rejected"] == 1
    changed = _expected_summary_changes(history)
    assert late["summary_rows_written"] == len(changed)
    assert nothing["records_by_case"] == dict.fromkeys(CASES, 0)
    assert (nothing["rejected"], nothing["summary_rows_written"]) == (1, 0)
    assert (nothing["summary_snapshot_id"], nothing["latest_snapshot_id"]) == (
        late["summary_snapshot_id"],
        late["latest_snapshot_id"],
    )
    assert late["summary_snapshot_id"] != first["summary_snapshot_id"]
    assert late["latest_snapshot_id"] == lake.snapshot("latest_summary")
    assert refusal["error"].startswith("another backfill run is in progress: run ghost-blocker")
    assert OTHER_HOST in refusal["error"] and refusal["records_by_case"] == dict.fromkeys(CASES, 0)
    for run in runs:
        started = dt.datetime.fromisoformat(run["started_at"])
        assert started.utcoffset() == dt.timedelta(0)
        assert run["ended_at"] is None or dt.datetime.fromisoformat(run["ended_at"]) >= started
    assert [r["run_id"] for r in json.loads(ok(lake, capsys, "runs", "--limit", "2", "--json"))] == [
        ids["refused"],
        "ghost-blocker",
    ]
    lines = ok(lake, capsys, "runs").splitlines()
    assert len(lines) == len(runs) + 1 and lines[-1].startswith(f"{len(runs)} runs in ")
    assert lines[0].startswith(ids["refused"]) and "REFUSED" in lines[0] and "error: another backfill" in lines[0]
    assert f"records I 1 II 1 III 4 IV 2  rejected 1  summary rows {len(changed)}" in lines[3]


# ------------------------------------------------------------------------------------------------ diff


def _expected_summary_changes(history: History) -> set[tuple[int, str]]:
    (old, _), (new, _) = history.before, history.after
    return {k for k in new if k not in old or old[k] != new[k]}


def test_diff_of_the_late_run_is_exactly_what_the_model_changed(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    lake, run = history.lake, history.runs["late"]
    changes = json.loads(ok(lake, capsys, "diff", run, "--json"))
    assert {tuple(c) for c in changes} == {("table", "cons_acct_key", "rpt_as_of_mo", "change", "columns")}
    summary = {(c["cons_acct_key"], c["rpt_as_of_mo"]): c for c in changes if c["table"] == "summary"}
    (old, old_latest), (new, new_latest) = history.before, history.after
    assert set(summary) == _expected_summary_changes(history)
    for key, change in summary.items():
        assert change["change"] == ("update" if key in old else "insert")
        if deleted(new[key]["soft_del_cd"]):
            assert change["columns"]["soft_del_cd"] == [None, new[key]["soft_del_cd"]]
            continue
        before = old.get(key, {})
        for column, value in new[key].items():
            if column in ("cons_acct_key", "rpt_as_of_mo"):
                continue
            was = before.get(column)
            if was == value:
                assert column not in change["columns"], (key, column)
            else:
                expected = [utc(was), utc(value)] if column == "base_ts" else [was, value]
                assert change["columns"][column] == expected, (key, column)
    latest = {c["cons_acct_key"]: c for c in changes if c["table"] == "latest_summary"}
    assert set(latest) == {a for a in new_latest if a not in old_latest or old_latest[a] != new_latest[a]}
    assert latest[4]["change"] == "update" and latest[4]["columns"]["rpt_as_of_mo"] == [M[5], FORWARD]
    assert {latest[a]["change"] for a in (5, 6)} == {"insert"}
    assert [c["table"] for c in changes] == ["summary"] * len(summary) + ["latest_summary"] * len(latest)

    lines = ok(lake, capsys, "diff", run).splitlines()
    assert lines[-1] == f"run {run} changed {len(summary)} summary rows and {len(latest)} latest_summary rows"
    row = next(line for line in lines if line.startswith(f"summary (1, {M[5]}) update: "))
    assert "balance_am_history[4] 101 → 9002" in row and "balance_am_history[3] 102 → 2" in row
    assert "credit_limit_am_history[4] 1000 → None" in row and "balance_am_history[0]" not in row


def test_diff_of_a_run_that_applied_nothing_is_empty(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    lake, run = history.lake, history.runs["nothing"]
    assert json.loads(ok(lake, capsys, "diff", run, "--json")) == []
    assert ok(lake, capsys, "diff", run).splitlines() == [f"run {run} changed 0 summary rows and 0 latest_summary rows"]
    first = json.loads(ok(lake, capsys, "diff", history.runs["history"], "--json"))
    assert {(c["table"], c["change"]) for c in first} == {("summary", "insert"), ("latest_summary", "insert")}
    assert len(first) == 23 + 4


def test_diff_refuses_a_run_that_did_not_commit(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    lake = history.lake
    assert "ended REFUSED" in refused(lake, capsys, "diff", history.runs["refused"])
    assert "is still open" in refused(lake, capsys, "diff", "ghost-blocker")
    assert "no-such-run is not in the run log" in refused(lake, capsys, "diff", "no-such-run", "--json")


# --------------------------------------------------------------------------------------------- explain


def _explained(history: History, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """`explain --json`, each position checked against the reference model: values and winning record."""
    lake = history.lake
    got = json.loads(ok(lake, capsys, "explain", *argv, "--json"))
    assert list(got) == ["cons_acct_key", "rpt_as_of_mo", "last_run_id", "positions"]
    assert {tuple(p) for p in got["positions"]} == {("i", "month", "values", "source")}
    key = (got["cons_acct_key"], got["rpt_as_of_mo"])
    row = lake.model.summary()[key]
    assert [p["i"] for p in got["positions"]] == list(range(36))
    for p in got["positions"]:
        assert p["month"] == add_months(key[1], -p["i"])
        assert p["values"] == {h: row[h][p["i"]] for h in HISTORIES}, p
        winner = lake.model.winner.get((key[0], p["month"]))
        source = None if winner is None else {c: utc(winner[c]) for c in ("base_ts", "insert_ts", "update_ts")}
        if source is not None:
            source["soft_del_cd"] = winner["soft_del_cd"]
        assert p["source"] == source, p
    return got


def test_explain_names_the_winning_record_of_every_position_and_the_last_run(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    late, first = history.runs["late"], history.runs["history"]
    gap = _explained(history, capsys, "3", M[4])
    assert gap["last_run_id"] == late
    assert gap["positions"][2]["values"]["balance_am_history"] == 5555
    assert [p["source"] is None for p in gap["positions"]] == [False] * 5 + [True] * 31
    deletion = _explained(history, capsys, "2", M[5])
    assert deletion["positions"][2]["source"]["soft_del_cd"] == "4"
    assert deletion["positions"][2]["values"]["balance_am_history"] is None and deletion["last_run_id"] == late
    tie = _explained(history, capsys, "1", M[5])
    assert tie["positions"][3]["source"]["insert_ts"] == utc(dt.datetime(2026, 1, 2)) and tie["last_run_id"] == late
    forward = _explained(history, capsys, "4")  # the latest_summary row
    assert (forward["rpt_as_of_mo"], forward["last_run_id"]) == (FORWARD, late)
    assert _explained(history, capsys, "4", M[2])["last_run_id"] == first  # untouched by the late run

    lines = ok(history.lake, capsys, "explain", "3", M[4]).splitlines()
    assert lines[0].startswith(f"summary row (3, {M[4]}): soft_del_cd None, base_ts ")
    assert lines[0].endswith(f"last written by run {late}")
    assert lines[1].split()[:3] == ["i", "month", "actual_payment_am_history"] and lines[1].split()[-1] == "source"
    assert lines[4].split()[:2] == ["2", M[2]] and "5555" in lines[4].split() and "soft_del_cd=-" in lines[4]
    assert lines[-1].split() == ["35", add_months(M[4], -35), *["-"] * 7, "no", "row"]


def test_explain_refuses_a_row_that_does_not_exist(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no row for account 1 and month 2019-01" in refused(history.lake, capsys, "explain", "1", "2019-01")
    assert "account 99 has no row in " in refused(history.lake, capsys, "explain", "99", "--json")


# ---------------------------------------------------------------------------------------------- unlock


def _runs(lake: Lake) -> dict[str, dict[str, Any]]:
    out = {}
    for row in lake.spark.table(lake.table("backfill_runs")).orderBy("at").collect():
        out[row["run_id"]] = row.asDict()
    return out


def test_unlock_rolls_back_a_run_of_another_host_that_did_not_commit(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    """The blocker's process "died" after its summary MERGE into its branch: unlock drops the branch."""
    lake = history.lake
    before = {t: lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_rejects")}
    summary = lake.table("summary")
    lake.spark.sql(f"ALTER TABLE {summary} CREATE BRANCH `backfill-ghost-blocker`")
    lake.spark.sql(f"UPDATE {summary}.`branch_backfill-ghost-blocker` SET balance_am = -5 WHERE cons_acct_key = 1")
    assert ok(lake, capsys, "unlock", "ghost-blocker").strip() == (
        "run ghost-blocker: ROLLED_BACK (its unpublished writes dropped)"
    )
    assert {t: lake.snapshot(t) for t in before} == before
    assert [r["name"] for r in lake.spark.table(f"{summary}.refs").where("type = 'BRANCH'").collect()] == ["main"]
    lake.assert_matches_model()
    entry = _runs(lake)["ghost-blocker"]
    assert entry["event"] == "ROLLED_BACK" and f"process 4242 of host {OTHER_HOST} gone" in entry["error"]
    assert "already has an outcome" in refused(lake, capsys, "unlock", "ghost-blocker")
    assert "is not open" in refused(lake, capsys, "unlock", history.runs["late"])


def test_unlock_completes_a_run_of_another_host_whose_commit_was_complete(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = history.lake
    ghost(lake, "ghost-done")
    snapshots = (lake.snapshot("summary"), lake.snapshot("latest_summary"))
    state = [(lake.lakehouse.watermark(), "ghost-done", None, *snapshots)]
    lake.spark.createDataFrame(state, STATE_DDL).writeTo(lake.table("backfill_state")).append()
    assert ok(lake, capsys, "unlock", "ghost-done").strip() == "run ghost-done: SUCCEEDED (its commit was complete)"
    assert (lake.snapshot("summary"), lake.snapshot("latest_summary")) == snapshots
    runs = {r["run_id"]: r for r in json.loads(ok(lake, capsys, "runs", "--json"))}
    assert runs["ghost-done"]["outcome"] == "SUCCEEDED" and runs["ghost-done"]["records_by_case"] is None
    lake.assert_matches_model()


def test_unlock_refuses_while_the_process_is_alive_on_this_host(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = history.lake
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        ghost(lake, "ghost-alive", host=socket.gethostname(), pid=sleeper.pid)
        message = refused(lake, capsys, "unlock", "ghost-alive")
        assert f"process {sleeper.pid} is alive on this host" in message
        assert _runs(lake)["ghost-alive"]["event"] == "STARTED"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "ROLLED_BACK" in ok(lake, capsys, "unlock", "ghost-alive")  # gone now: closed, nothing to restore
    lake.assert_matches_model()


def test_an_older_run_log_gains_the_counts_and_shows_them_unknown(history: History) -> None:
    """A run log from before rejects and counts were kept: `ensure_tables` adds the columns, `runs` reads it."""
    lake = history.lake
    older = Lakehouse(spark=lake.resource, runs_table="older_runs")
    old_ddl = "run_id string, event string, at timestamp, host string, pid int, summary_snapshot bigint,"
    old_ddl += " latest_snapshot bigint, error string"
    lake.spark.sql(f"CREATE TABLE {older.name('older_runs')} ({old_ddl}) USING iceberg")
    at = dt.datetime(2025, 1, 1)
    lake.spark.sql(
        f"INSERT INTO {older.name('older_runs')} VALUES ('old', 'STARTED', TIMESTAMP'{at}', 'h', 1, 1, 2, NULL),"
        f" ('old', 'SUCCEEDED', TIMESTAMP'{at}', 'h', 1, 3, 4, NULL)"
    )
    [run] = run_log(older)  # before the upgrade: read as it is
    assert (run.outcome, run.records_by_case, run.rejected, run.after) == ("SUCCEEDED", None, None, (3, 4))
    older.ensure_tables()
    columns = lake.spark.table(older.name("older_runs")).columns
    assert columns == [c.split()[0] for c in RUNS_DDL.split(",")]
    [run] = run_log(older)
    assert (run.outcome, run.records_by_case, run.summary_rows_written, run.before) == ("SUCCEEDED", None, None, (1, 2))
