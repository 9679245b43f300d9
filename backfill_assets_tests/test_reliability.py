"""Killed and concurrent runs: tables stay as they were (or are restored at the next start), and the next run
finishes the job exactly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.runlog import ROLLED_BACK, open_runs, recover
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.transforms.months import month_range
from backfill_assets_tests.lake import Lake, record


class CliRun:
    """`backfill-assets run` in its own process (and process group), stopped at a fault point."""

    def __init__(self, lake: Lake, point: str, master: str = "local[2]") -> None:
        spark_config = {
            "master": master,
            "namespace": lake.resource.namespace,
            "warehouse": lake.resource.warehouse,
            "driver_memory": "1g",
            "shuffle_partitions": 2,
            "extra_conf": {"spark.ui.enabled": "false"},
        }
        env = {
            **os.environ,
            "BACKFILL_FAULT_POINT": point,
            "BACKFILL_SPARK_CONFIG": json.dumps(spark_config),
            "PYSPARK_PYTHON": sys.executable,
        }
        env.pop("DAGSTER_HOME", None)
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "backfill-assets"), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, point: str, timeout: float = 600) -> None:
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.process.poll() is None, "".join(seen[-30:])
                continue
            seen.append(line)
            if f"fault point {point} reached" in line:
                return
        raise AssertionError(f"never reached {point}: {''.join(seen[-30:])}")

    def kill(self) -> None:
        """kill -9 of the run's process and its Spark JVM."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(60)


def prepared(spark: SparkSession, spark_resource: SparkIceberg) -> Lake:
    """Three accounts summarised, then a late batch waiting: a correction, a deletion, a forward month."""
    lake = Lake(spark, spark_resource)
    lake.deliver(record(a, m, acct_bal_am=10 * a) for a in (1, 2, 3) for m in month_range("2024-01", "2024-06"))
    lake.run()
    lake.deliver([record(1, "2024-03", acct_bal_am=7), record(2, "2024-02", soft_del_cd="1"), record(3, "2024-07")])
    return lake


def snapshots(lake: Lake) -> tuple[int | None, int | None]:
    return lake.snapshot("summary"), lake.snapshot("latest_summary")


@pytest.mark.parametrize(
    ("point", "delay"),
    [("reading", 0.0), ("summary_merge:0", 1.5), ("between_tables", 0.0)],
    ids=["while-reading", "while-writing-summary", "between-the-two-tables"],
)
def test_a_killed_run_leaves_or_gets_back_the_tables_and_the_next_run_is_exact(
    spark: SparkSession, spark_resource: SparkIceberg, point: str, delay: float
) -> None:
    lake = prepared(spark, spark_resource)
    before = snapshots(lake)
    run = CliRun(lake, point)
    run.wait_for(point.split(":")[0])
    if point == "reading":  # a second run meanwhile is refused and changes nothing
        refused = lake.try_run()
        assert not refused.success and "another backfill run is in progress" in refused.error, refused.error
        assert snapshots(lake) == before
    time.sleep(delay)  # summary_merge:0 goes on into the MERGE: the kill lands in the middle of it
    run.kill()

    if point == "between_tables":
        assert snapshots(lake)[0] != before[0] and snapshots(lake)[1] == before[1]  # half written …
    [dead] = [r["run_id"] for r in open_runs(lake.lakehouse)]
    assert recover(lake.lakehouse) == [dead]  # … and restored at the next start
    assert snapshots(lake) == before
    outcomes = lake.spark.table(lake.table("backfill_runs")).where(f"run_id = '{dead}'").collect()
    assert ROLLED_BACK in {r["event"] for r in outcomes}

    lake.run()  # the watermark did not move: the whole batch is applied
    lake.assert_matches_model()
    assert open_runs(lake.lakehouse) == []


def test_extra_and_reordered_source_columns_are_tolerated(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    lake = prepared(spark, spark_resource)
    accounts = lake.table("accounts_all")
    spark.sql(f"ALTER TABLE {accounts} ADD COLUMN lender_note string FIRST")
    spark.sql(f"ALTER TABLE {accounts} ALTER COLUMN acct_bal_am AFTER lender_note")
    lake.run()
    lake.assert_matches_model()


def test_a_missing_source_column_is_refused_before_anything_is_written(
    spark: SparkSession, spark_resource: SparkIceberg
) -> None:
    lake = prepared(spark, spark_resource)
    before = snapshots(lake)
    spark.sql(f"ALTER TABLE {lake.table('accounts_all')} DROP COLUMN past_due_am")
    report = lake.try_run()
    assert not report.success
    assert "accounts_all" in report.error and "past_due_am" in report.error, report.error
    assert snapshots(lake) == before
    assert open_runs(lake.lakehouse) == []
    [outcome] = (
        spark.table(lake.table("backfill_runs")).where(f"run_id = '{report.run_id}' AND event <> 'STARTED'").collect()
    )
    assert outcome["event"] == "FAILED" and "past_due_am" in outcome["error"]  # the run log says why
    assert (outcome["summary_snapshot"], outcome["latest_snapshot"]) == before
