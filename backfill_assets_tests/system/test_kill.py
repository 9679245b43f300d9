"""Killed and concurrent runs: tables stay as they were (or are restored at the next start), and the next run
finishes the job exactly."""

from __future__ import annotations

import time

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.runlog import ROLLED_BACK, open_runs, recover
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import CliRun, prepared, snapshots


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
