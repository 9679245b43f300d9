"""Write-audit-publish (docs/operations.md): a reader process sees `main` of summary and latest_summary move
only when a run publishes, every run tag holds a consistent pair equal to the reference model, and a
failing write check leaves `main`, the watermark and no branch behind."""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.runlog import FAILED, PUBLISHING, SUCCEEDED
from backfill_assets.resources.spark import SparkIceberg, ref_snapshot
from backfill_assets_tests.fixtures import MONTHS, Lake, random_batch

TABLES = ("summary", "latest_summary")
# A reader that knows nothing of this project: it resolves each table's refs the way any reader of an
# Iceberg Hadoop catalog does (the newest metadata file) and prints them whenever they change.
READER = r"""
import json, pathlib, sys, time
root, tables = pathlib.Path(sys.argv[1]), sys.argv[2:]
last = None
while True:
    state = []
    for table in tables:
        meta = root / table / "metadata"
        try:
            version = (meta / "version-hint.text").read_text().strip()
            doc = json.loads((meta / f"v{version}.metadata.json").read_text())
        except (OSError, ValueError):
            state = None
            break
        state.append({name: ref["snapshot-id"] for name, ref in doc.get("refs", {}).items()})
    if state is not None and state != last:
        print(json.dumps({"t": time.time(), "refs": state}), flush=True)
        last = state
    time.sleep(0.02)
"""


FIRST: dict[str, Any] = {}  # the module's first run: its id and the model after it


@pytest.fixture(scope="module")
def lake(spark: SparkSession, spark_resource: SparkIceberg) -> Lake:
    lake = Lake(spark, spark_resource)
    rng = random.Random(11)
    lake.deliver(random_batch(rng, range(1, 9), MONTHS[-14:], 40))
    FIRST.update(run_id=lake.run().run_id, model=copy.deepcopy(lake.model))
    return lake


def _log(lake: Lake, run_id: str) -> dict[str, Any]:
    return {
        r["event"]: r for r in lake.spark.table(lake.table("backfill_runs")).where(f"run_id = '{run_id}'").collect()
    }


def _branches(lake: Lake) -> set[str]:
    rows = [lake.spark.table(f"{lake.table(t)}.refs").where("type = 'BRANCH'").collect() for t in TABLES]
    return {r["name"] for table in rows for r in table} - {"main"}


@pytest.fixture
def reader(lake: Lake) -> Iterator[list[dict[str, Any]]]:
    """The refs of both tables as a separate process saw them, each change with its time."""
    root = Path(lake.resource.warehouse) / lake.resource.namespace
    process = subprocess.Popen([sys.executable, "-c", READER, str(root), *TABLES], stdout=subprocess.PIPE, text=True)
    seen: list[dict[str, Any]] = []
    assert process.stdout is not None
    thread = threading.Thread(target=lambda: seen.extend(json.loads(line) for line in process.stdout), daemon=True)
    thread.start()
    time.sleep(1)  # its first line: the refs before the runs
    yield seen
    process.kill()
    thread.join(10)


def test_a_reader_sees_main_move_only_at_publish_and_consistent_pairs_at_the_tags(
    lake: Lake, reader: list[dict[str, Any]]
) -> None:
    lake.deliver(random_batch(random.Random(12), range(1, 12), MONTHS[-14:], 12))
    report = lake.run()
    run_id, metadata = report.run_id, report.metadata["summary_backfilled"]
    assert run_id is not None and metadata["tag"] == f"run-{run_id}"
    time.sleep(0.5)
    log = _log(lake, run_id)
    heads = (log[PUBLISHING]["summary_snapshot"], log[PUBLISHING]["latest_snapshot"])
    assert log[SUCCEEDED]["tag"] == f"run-{run_id}" and log[PUBLISHING]["branch"] == f"backfill-{run_id}"
    # the run's writes sat on its branch while main stayed where it was (the audit) …
    on_branch = [s for s in reader if all(s["refs"][i].get(f"backfill-{run_id}") == heads[i] for i in range(2))]
    assert any(s["refs"][0]["main"] != heads[0] for s in on_branch)
    # … main reached the run's heads only after its write checks had passed (its PUBLISHING entry), and
    # main of summary never pointed anywhere else than where it started and the published head
    mains = [state["refs"][0]["main"] for state in reader]
    first = next(dt.datetime.fromtimestamp(s["t"]) for s in reader if s["refs"][0]["main"] == heads[0])
    assert first >= log[PUBLISHING]["at"] - dt.timedelta(milliseconds=50), (first, log[PUBLISHING]["at"])
    assert set(mains) == {mains[0], heads[0]} and mains[0] != heads[0]
    assert _branches(lake) == set()
    # at each run's tag both tables are exactly what the model says after that run
    for tag, model in ((f"run-{FIRST['run_id']}", FIRST["model"]), (f"run-{run_id}", lake.model)):
        lake.model, current = model, lake.model
        try:
            lake.assert_matches_model(tag=tag)
        finally:
            lake.model = current
    # the UI shows the first rows (by month, then account) that changed between the two tags, old → new
    old, new = (lake.rows("summary", f"run-{r}") for r in (FIRST["run_id"], run_id))
    changed = sorted((k for k in new if old.get(k) != new[k]), key=lambda k: (k[1], k[0]))
    shown = [tuple(line.split(" | ")[:2]) for line in metadata["first_changed_rows"].splitlines()[2:]]
    assert changed and shown == [(f"| {a}", m) for a, m in changed[:5]]


_ROW_THE_RUN_WROTE = "ORDER BY base_ts DESC LIMIT 1"
CORRUPTIONS = {  # what another writer does to the run's branch while it waits → what the write check says
    "a second row of a written key": (
        "INSERT INTO {branch} SELECT * FROM {branch} " + _ROW_THE_RUN_WROTE,
        "key must be unique",
    ),
    "a written row changed": (  # the run's own rows look right; the branch holds another version of one
        "MERGE INTO {branch} t USING (SELECT * FROM {branch} " + _ROW_THE_RUN_WROTE + ") s"
        " ON t.cons_acct_key = s.cons_acct_key AND t.rpt_as_of_mo = s.rpt_as_of_mo"
        " WHEN MATCHED THEN UPDATE SET t.balance_am = t.balance_am + 1",
        "held by a data file the run's MERGE did not write",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_failing_write_check_leaves_main_the_watermark_and_no_branch(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, corruption: str
) -> None:
    statement, message = CORRUPTIONS[corruption]
    seed = 13 + list(CORRUPTIONS).index(corruption)
    lake.deliver(random_batch(random.Random(seed), range(1, 12), MONTHS[-14:], 8), to_model=False)
    before = {t: lake.snapshot(t) for t in (*TABLES, "backfill_state")}
    monkeypatch.setenv("BACKFILL_FAULT_POINT", "auditing:15")  # the run waits there, its rows on its branch

    def corrupt() -> None:
        """Once the run's MERGE is on its summary branch, change the branch behind the run's back."""
        summary, deadline = lake.table("summary"), time.monotonic() + 300
        while time.monotonic() < deadline:
            branch = next(iter(_branches(lake)), None)
            if branch and ref_snapshot(lake.resource, summary, branch) != ref_snapshot(lake.resource, summary, "main"):
                break
            time.sleep(0.5)
        assert branch is not None
        lake.spark.sql(statement.format(branch=f"{summary}.`branch_{branch}`"))

    thread = threading.Thread(target=corrupt)
    thread.start()
    report = lake.try_run()
    thread.join()
    assert not report.success and report.run_id is not None
    check = report.checks["summary_backfilled:summary_rows_valid"]
    assert not check.passed and message in report.error, report.error
    assert {t: lake.snapshot(t) for t in (*TABLES, "backfill_state")} == before
    assert _branches(lake) == set()
    assert FAILED in _log(lake, report.run_id)
