"""The source checks (monitors.py) on a real warehouse and instance: `load_freshness` names the oldest load
waiting past the limit, `column_schema_change` warns about a column of accounts_all added or retyped.

No backfill run (each costs tens of seconds): the watermark is that of an imported `summary`, the greatest
`base_ts` in it (docs/spec.md §4.5), so the loads delivered before it count as applied.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pyspark.sql import SparkSession

from backfill_assets.definitions import build_defs
from backfill_assets.monitors import FRESHNESS_KEY, SCHEMA_KEYS
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import SUMMARY, Lake, frame, next_ts, record, summary_row


def _check(lake: Lake, key: dg.AssetCheckKey, limit_hours: float = 24) -> dg.AssetCheckEvaluation:
    """One check executed as the schedule's job executes it, with the given load-wait limit."""
    defs = build_defs(lake.resource, lake.lakehouse, DataQuality(max_load_wait_hours=limit_hours))
    job = defs.resolve_job_def("source_checks_job").get_subset(asset_check_selection={key})
    [evaluation] = job.execute_in_process(instance=lake.instance).get_asset_check_evaluations()
    return evaluation


def _metadata(evaluation: dg.AssetCheckEvaluation) -> dict[str, Any]:
    return {k: v.value for k, v in evaluation.metadata.items()}


def _applied_lake(spark: SparkSession, spark_resource: SparkIceberg) -> Lake:
    """accounts_all with one load, all of it applied: summary's greatest base_ts is later than its records."""
    lake = Lake(spark, spark_resource)
    lake.deliver(record(a, "2024-01") for a in (1, 2))
    lake.lakehouse.ensure_tables()
    frame(spark, [summary_row(1, "2024-01", base_ts=next_ts())], SUMMARY).writeTo(lake.table("summary")).append()
    return lake


def test_freshness_passes_when_nothing_waits(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    evaluation = _check(_applied_lake(spark, spark_resource), FRESHNESS_KEY, limit_hours=0)
    assert evaluation.passed and evaluation.description == "no load is waiting"
    assert _metadata(evaluation)["months_pending"] == 0


def test_freshness_names_the_oldest_waiting_load_and_warns_past_the_limit(
    spark: SparkSession, spark_resource: SparkIceberg
) -> None:
    lake = _applied_lake(spark, spark_resource)
    lake.deliver([record(1, "2024-02"), record(2, "2024-03")])
    waiting = lake.snapshot("accounts_all")
    lake.deliver([record(1, "2024-04")])  # a later load: the oldest one is still the one reported
    snapshots = f"{lake.table('accounts_all')}.snapshots"
    [[committed]] = spark.sql(  # in the session's time zone, UTC
        f"SELECT date_format(committed_at, \"yyyy-MM-dd'T'HH:mm:ss\") FROM {snapshots} WHERE snapshot_id = {waiting}"
    ).collect()

    within = _check(lake, FRESHNESS_KEY, limit_hours=24)
    assert within.passed, within.description
    assert _metadata(within)["oldest_snapshot_id"] == str(waiting)

    late = _check(lake, FRESHNESS_KEY, limit_hours=0)
    assert not late.passed and late.severity == dg.AssetCheckSeverity.WARN
    assert f"snapshot {waiting} (months 2024-02, 2024-03)" in (late.description or "")
    assert "more than the limit of 0 h" in (late.description or "")
    metadata = _metadata(late)
    assert metadata["oldest_snapshot_id"] == str(waiting) and metadata["oldest_months"] == "2024-02, 2024-03"
    assert metadata["oldest_committed_at"][:19] == committed
    assert 0 <= metadata["hours_waited"] < 1  # delivered moments ago (rounded): a time-zone slip would show here
    assert metadata["months_pending"] == 3 and metadata["pending_months"] == "2024-02, 2024-03, 2024-04"
    assert metadata["loads_waiting"] == 2 and metadata["limit_hours"] == 0


def _observe(lake: Lake, cursor: str | None) -> str | None:
    """One tick of the load sensor, its events recorded in the instance as the daemon records them."""
    sensor = lake.defs.resolve_sensor_def("accounts_loaded")
    with dg.build_sensor_context(
        instance=lake.instance, cursor=cursor, resources={"lakehouse": lake.lakehouse}, definitions=lake.defs
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult), result
    for event in result.asset_events:
        lake.instance.report_runless_asset_event(event)
    return result.cursor


def test_schema_change_check_warns_naming_the_column(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    lake, [schema_check] = _applied_lake(spark, spark_resource), SCHEMA_KEYS
    cursor = _observe(lake, None)
    lake.deliver([record(1, "2024-02")])
    cursor = _observe(lake, cursor)
    [latest] = lake.instance.fetch_materializations(schema_check.asset_key, limit=1).records
    assert latest.asset_materialization is not None
    columns = latest.asset_materialization.metadata["dagster/column_schema"].value
    assert isinstance(columns, dg.TableSchema) and ("acct_bal_am", "int") in [(c.name, c.type) for c in columns.columns]
    unchanged = _check(lake, schema_check)
    assert unchanged.passed, unchanged.description

    spark.sql(f"ALTER TABLE {lake.table('accounts_all')} ADD COLUMN lender_note string")
    cursor = _observe(lake, cursor)  # no new snapshot: the new schema alone is reported
    added = _check(lake, schema_check)
    assert not added.passed and added.severity == dg.AssetCheckSeverity.WARN
    assert "Added columns: lender_note" in (added.description or "")

    spark.sql(f"ALTER TABLE {lake.table('accounts_all')} ALTER COLUMN acct_bal_am TYPE bigint")
    _observe(lake, cursor)
    retyped = _check(lake, schema_check)
    assert not retyped.passed and "acct_bal_am: int -> bigint" in (retyped.description or "")
