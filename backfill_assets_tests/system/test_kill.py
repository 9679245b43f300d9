"""Killed and concurrent runs: `main` of the tables stays as it was (the branch is dropped at the next start),
or, killed between the two fast-forwards of its publish, the run is completed at the next start; the tables
end equal to the reference model."""

from __future__ import annotations

import time

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.runlog import PUBLISHING, ROLLED_BACK, STARTED, SUCCEEDED, open_runs, recover
from backfill_assets.resources.spark import SparkIceberg, ref_snapshot
from backfill_assets_tests.fixtures import CliRun, Lake, prepared, snapshots


@pytest.mark.parametrize(
    ("point", "delay"),
    [("summary_merge:0", 1.5), ("between_tables", 0.0)],
    ids=["while-writing-summary", "between-the-two-tables"],
)
def test_a_killed_run_leaves_or_gets_back_the_tables_and_the_next_run_is_exact(
    spark: SparkSession, spark_resource: SparkIceberg, point: str, delay: float
) -> None:
    lake = prepared(spark, spark_resource)
    before = snapshots(lake)
    run = CliRun(lake, point)
    run.wait_for(point.split(":")[0])
    if point == "between_tables":  # a second run meanwhile is refused and changes nothing
        held = snapshots(lake)
        refused = lake.try_run()
        assert not refused.success and "another backfill run is in progress" in refused.error, refused.error
        assert snapshots(lake) == held
    time.sleep(delay)  # summary_merge:0 goes on into the MERGE: the kill lands in the middle of it
    run.kill()

    dead = [r["run_id"] for r in open_runs(lake.lakehouse)]
    if point == "between_tables":  # half published: summary's main moved, latest_summary's not …
        assert snapshots(lake)[0] != before[0] and snapshots(lake)[1] == before[1]
        assert recover(lake.lakehouse) == []  # … and completed forward at the next start
        tagged = tuple(
            ref_snapshot(lake.resource, lake.table(t), f"run-{dead[0]}") for t in ("summary", "latest_summary")
        )
        assert snapshots(lake) == tagged and before[1] != tagged[1]
        assert outcomes(lake, dead[0]) == {STARTED, PUBLISHING, SUCCEEDED}
        assert branches(lake) == set()
        lake.model.run()  # the killed run applied the batch: the watermark moved with the publish
        lake.assert_matches_model()
        assert lake.run().partitions is None  # nothing left to apply
        return
    assert snapshots(lake) == before  # main never moved: the run wrote only to its branch …
    assert recover(lake.lakehouse) == dead  # … which the next start drops
    assert snapshots(lake) == before and branches(lake) == set()
    assert ROLLED_BACK in outcomes(lake, dead[0])

    lake.run()  # the watermark did not move: the whole batch is applied
    lake.assert_matches_model()
    assert open_runs(lake.lakehouse) == []


def outcomes(lake: Lake, run_id: str) -> set[str]:
    return {r["event"] for r in lake.spark.table(lake.table("backfill_runs")).where(f"run_id = '{run_id}'").collect()}


def branches(lake: Lake) -> set[str]:
    """Branches other than main on summary and latest_summary."""
    refs = (
        lake.spark.table(f"{lake.table(t)}.refs").where("type = 'BRANCH'").collect()
        for t in ("summary", "latest_summary")
    )
    return {r["name"] for rows in refs for r in rows if r["name"] != "main"}
