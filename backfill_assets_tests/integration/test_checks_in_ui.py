"""The asset checks as the Dagster UI shows them: a real webserver over the instance of real runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import Lake, record

CHECKS = "{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"
# newest first: the refused run, then the good one
HISTORY = """
query ($asset: String!, $name: String!) {
  assetCheckExecutions(assetKey: {path: [$asset]}, checkName: $name, limit: 5) {
    status evaluation { description metadataEntries { label ... on IntMetadataEntry { intValue } } } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ui(spark: SparkSession, spark_resource: SparkIceberg, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A good run and a refused one, recorded in a real instance, served by `dagster-webserver`."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {home / 'storage'}\ntelemetry:\n  enabled: false\n"
    )
    lake = Lake(spark, spark_resource)
    lake.instance = dg.DagsterInstance.from_config(str(home))
    lake.deliver(record(a, f"2024-0{m}") for a in (1, 2) for m in range(1, 5))
    lake.run()
    lake.deliver([record(1, "2024-13")], to_model=False)
    assert not lake.try_run().success
    port = _free_port()
    fields = {k: getattr(lake.resource, k) for k in ("namespace", "warehouse")}
    env = {**os.environ, "DAGSTER_HOME": str(home), "BACKFILL_SPARK_CONFIG": json.dumps(fields)}
    webserver = str(Path(sys.executable).parent / "dagster-webserver")
    server = subprocess.Popen(
        [webserver, "-h", "127.0.0.1", "-p", str(port), "-m", "backfill_assets.definitions"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "webserver did not start"
                time.sleep(1)

        def graphql(query: str, **variables: Any) -> Any:
            body = json.dumps({"query": query, "variables": variables}).encode()
            request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.load(response)
            assert "errors" not in answer, answer
            return answer["data"]

        yield graphql
    finally:
        server.terminate()
        server.wait(30)


def test_each_asset_shows_its_checks_with_metadata(ui: Any) -> None:
    shown = [
        (node["assetKey"]["path"][-1], check)
        for node in ui(CHECKS)["assetNodes"]
        for check in (node["assetChecksOrError"] or {}).get("checks", [])
    ]
    # the source checks and the whole-table audit warn only and run on their own: not in backfill_job runs
    on_their_own = {(asset, check["name"]) for asset, check in shown if not check["blocking"]}
    assert on_their_own == {
        ("summary_backfilled", "load_freshness"),
        ("summary_backfilled", "summary_verified"),
        ("accounts_all", "column_schema_change"),
    }
    blocking = [(asset, check) for asset, check in shown if check["blocking"]]
    assert len(blocking) == 11
    for asset, check in blocking:
        executions = ui(HISTORY, asset=asset, name=check["name"])["assetCheckExecutions"]
        passed = [e for e in executions if e["status"] == "SUCCEEDED"]
        assert len(passed) == 1, (asset, check["name"], executions)
        labels = {m["label"] for m in passed[0]["evaluation"]["metadataEntries"]}
        assert {"rows_read", "failing_rows", "errors", "warnings"} <= labels, (asset, check["name"])


def test_a_refused_run_shows_the_failed_check_and_its_examples(ui: Any) -> None:
    execution = ui(HISTORY, asset="classified_accounts", name="source_records_valid")["assetCheckExecutions"][0]
    assert execution["status"] == "FAILED"
    evaluation = execution["evaluation"]
    assert "column rpt_as_of_mo: must be a month" in evaluation["description"]
    metadata = {m["label"]: m.get("intValue") for m in evaluation["metadataEntries"]}
    assert metadata["failing_rows"] == 1 and {"problems", "failing_rows_by_month"} <= set(metadata)
