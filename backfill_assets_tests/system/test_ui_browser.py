"""The operator's path through the real UI: `dagster dev` (webserver and daemon) driven by headless Chromium.

An operator opens the backfill group, launches a month-range backfill from the partition dialog,
and finds one run, the partitions materialized and the checks passed; the tables then equal the
reference model. Screenshots are kept in `$BACKFILL_UI_ARTIFACTS` (default `test-artifacts/ui`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from pyspark.sql import SparkSession

from backfill_assets.generate import generate, write
from backfill_assets.partitions import MONTHLY
from backfill_assets.planning import required_range
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.transforms.months import month_range
from backfill_assets_tests.fixtures import LAYOUT, Lake

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("BACKFILL_UI_ARTIFACTS", REPO / "test-artifacts" / "ui"))
GROUP_PAGE = "/locations/backfill_assets/asset-groups/backfill"
GRAPH = ["classified_accounts", "case3_backfill", "joined_windows", "updated_histories", "summary_backfilled"]
BACKFILLS = """{ partitionBackfillsOrError { ... on PartitionBackfills { results {
  id status numPartitions runs(limit: 10) { runId status tags { key value } } } } } }"""
AUDITS = """{ assetCheckExecutions(assetKey: {path: ["summary_backfilled"]}, checkName: "summary_verified", limit: 5)
  { runId status evaluation { success metadataEntries { label ... on IntMetadataEntry { intValue } } } } }"""


@dataclass
class Ui:
    url: str
    lake: Lake
    needed: tuple[str, str]

    def graphql(self, query: str) -> Any:
        body = json.dumps({"query": query}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        return answer["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _records(df: Any) -> list[dict[str, Any]]:
    return [r.asDict() for r in df.collect()]


@pytest.fixture(scope="module")
def ui(spark: SparkSession, spark_resource: SparkIceberg, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """A small generated warehouse with a late batch waiting, served by `dagster dev` on 127.0.0.1."""
    lake = Lake(spark, spark_resource)
    data = generate(spark, accounts=120, months=24, end_month="2024-06", seed=11, late_fraction=0.3)
    write(data, lake.lakehouse)
    lake.model.deliver(_records(data.history))
    lake.model.run()
    lake.model.deliver(_records(data.late))
    last = MONTHLY.get_last_partition_key()
    assert last is not None
    lake.lakehouse.ensure_tables()
    needed = required_range(lake.lakehouse.pending_months(lake.lakehouse.watermark()), last, LAYOUT.reach)
    assert needed is not None

    home = tmp_path_factory.mktemp("dagster_dev_home")
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {home / 'storage'}\n"
        "run_queue:\n  max_concurrent_runs: 1\ntelemetry:\n  enabled: false\n"
        "nux:\n  enabled: false\n"  # no one-time community dialog popping up over the launch dialog
    )
    spark_config = {
        "namespace": lake.resource.namespace,
        "warehouse": lake.resource.warehouse,
        "driver_memory": "2g",
        "shuffle_partitions": 2,
        "extra_conf": {"spark.ui.enabled": "false"},
    }
    env = {**os.environ, "DAGSTER_HOME": str(home), "BACKFILL_SPARK_CONFIG": json.dumps(spark_config)}
    port = _free_port()
    log = (home / "dagster-dev.log").open("w")
    dagster = str(Path(sys.executable).parent / "dagster")
    dev = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # webserver, daemon and code servers: stopped together below
        preexec_fn=_default_signals,
    )
    try:
        served = Ui(f"http://127.0.0.1:{port}", lake, needed)
        deadline = time.monotonic() + 240
        while True:
            try:
                repos = served.graphql("{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }")
                if repos["repositoriesOrError"].get("nodes"):
                    break
            except OSError:
                pass
            assert dev.poll() is None and time.monotonic() < deadline, (home / "dagster-dev.log").read_text()[-3000:]
            time.sleep(2)
        yield served
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C does: dagster dev stops its processes
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
        shutil.copy(home / "dagster-dev.log", _artifacts() / "dagster-dev.log")


def _default_signals() -> None:
    """A shell may start us with SIGINT/SIGTERM ignored, and children inherit that: undo it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the browser test needs Chromium: apt-get install chromium (or set CHROMIUM=/path/to/chromium)"
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(90_000)
    yield opened
    context.close()


def _open(page: Page, ui: Ui, path: str, wait_for: str) -> None:
    page.goto(ui.url + path)
    page.get_by_text(wait_for, exact=True).first.wait_for()


def _shot(page: Page, name: str) -> None:
    page.wait_for_timeout(1500)  # let the layout settle
    page.screenshot(path=str(_artifacts() / f"{name}.png"))


def test_the_asset_graph_shows_the_five_assets_and_their_partitions(ui: Ui, page: Page) -> None:
    _open(page, ui, GROUP_PAGE, "summary_backfilled")
    assert page.get_by_text("joined_windows", exact=True).first.is_visible()
    _shot(page, "1-asset-graph")
    partitions = f"{len(MONTHLY.get_partition_keys())} partitions"
    _open(page, ui, f"{GROUP_PAGE}/list", partitions)  # shown once the statuses have loaded
    listed = page.inner_text("body")
    for asset in GRAPH:
        assert asset in listed, asset
    assert listed.count(partitions) == len(GRAPH) + 1  # and new_and_forward_accounts
    _shot(page, "2-asset-list")


def _audits(ui: Ui) -> list[dict[str, Any]]:
    """The executions of the whole-table audit `summary_verified`, newest first."""
    return list(ui.graphql(AUDITS)["assetCheckExecutions"])


def _backfill(ui: Ui) -> dict[str, Any]:
    """The one backfill launched (status REQUESTING until the UI's request has landed)."""
    results = ui.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
    assert len(results) <= 1, results
    return dict(results[0]) if results else {"status": "REQUESTING"}


def test_a_month_range_backfill_from_the_ui_is_one_exact_run(ui: Ui, page: Page) -> None:
    first, last = ui.needed
    _open(page, ui, GROUP_PAGE, "summary_backfilled")
    page.get_by_role("button", name="Materialize all").click()
    selection = page.get_by_placeholder("ex: 2015-01")
    selection.fill(f"[{first}...{last}]")
    selection.press("Enter")
    months = len(month_range(first, last))
    page.get_by_text(f"{months} partitions", exact=True).wait_for()
    _shot(page, "3-launch-backfill-of-a-month-range")
    page.get_by_role("button", name="Launch backfill").click()

    deadline = time.monotonic() + 20 * 60
    while (backfill := _backfill(ui))["status"] not in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED", "CANCELED"):
        assert time.monotonic() < deadline, backfill
        time.sleep(5)
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
    [run] = backfill["runs"]  # the whole range in one run (single-run backfill policy)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS"
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == ui.needed

    ui.lake.model.run()
    ui.lake.assert_matches_model()  # the same result as `backfill-assets run`

    _open(page, ui, "/assets/summary_backfilled?view=partitions", f"Materialized ({months})")
    _shot(page, "4-summary-backfilled-partitions")
    # six assets, load_freshness (monitors.py) and summary_verified: the UI runs every check of the assets it
    # materialises, and the whole-table audit, on demand only, yields nothing in such a run (shown skipped)
    _open(page, ui, f"/runs/{run['runId']}", "Succeeded (8)")
    body = page.inner_text("body")
    assert "Success" in body and "13 checks" in body
    audits = [e["status"] for e in _audits(ui) if e["runId"] == run["runId"]]  # one per partition
    assert audits and set(audits) == {"SKIPPED"}, audits
    _shot(page, "5-completed-run")
    _open(page, ui, "/assets/summary_backfilled?view=checks", "summary_rows_valid")
    checks = page.inner_text("body")
    for check in (
        "summary_window_valid",
        "latest_summary_agrees",
        "summary_rows_valid",
        "latest_rows_valid",
        "load_freshness",
    ):
        assert check in checks, check
    assert "Passed" in checks or "Succeeded" in checks
    _shot(page, "6-summary-backfilled-checks")


def test_the_whole_table_audit_runs_on_demand_from_the_checks_tab(ui: Ui, page: Page) -> None:
    """After the backfill (the test above), an operator executes summary_verified alone: it scans both tables."""
    before = {e["runId"] for e in _audits(ui)}
    _open(page, ui, "/assets/summary_backfilled?view=checks", "summary_verified")
    page.get_by_text("summary_verified", exact=True).first.click()
    page.get_by_role("button").filter(has_text=re.compile(r"^\s*Execute\s*$")).click()  # not "Execute all"
    deadline = time.monotonic() + 10 * 60
    while not (new := [e for e in _audits(ui) if e["runId"] not in before and e["status"] != "IN_PROGRESS"]):
        assert time.monotonic() < deadline, _audits(ui)
        time.sleep(3)
    [audit] = new
    assert audit["status"] == "SUCCEEDED" and audit["evaluation"]["success"], audit
    rows = {m["label"]: m.get("intValue") for m in audit["evaluation"]["metadataEntries"]}
    summary_rows = ui.lake.spark.table(ui.lake.lakehouse.name(ui.lake.lakehouse.summary_table)).count()
    latest_rows = ui.lake.spark.table(ui.lake.lakehouse.name(ui.lake.lakehouse.latest_table)).count()
    assert rows["rows_read"] == summary_rows + latest_rows and rows["failing_rows"] == 0, rows
    _open(page, ui, "/assets/summary_backfilled?view=checks", "summary_verified")
    _shot(page, "7-summary-verified-on-demand")
