"""Source schema changes: extra and reordered columns of accounts_all are tolerated; a missing one stops the
run before anything is written, and the run log says why."""

from __future__ import annotations

from pyspark.sql import SparkSession

from backfill_assets.resources.runlog import open_runs
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import prepared, snapshots


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
