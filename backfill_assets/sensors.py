"""Sensor: a new load into accounts_all requests one run over the partitions its records reach."""

from __future__ import annotations

import hashlib

import dagster as dg

from backfill_assets.assets import accounts_all
from backfill_assets.jobs import backfill_job, range_tags
from backfill_assets.monitors import column_schema
from backfill_assets.operations.loads import source_columns
from backfill_assets.partitions import MONTHLY
from backfill_assets.planning import required_range
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.spark import latest_snapshot


@dg.sensor(
    job=backfill_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Watches accounts_all's Iceberg snapshots. A new snapshot with unapplied records requests one run over"
        " late month m … m+35 (clipped to the last month) and reports the months it found as observations."
        " Each new snapshot or column schema is reported as a materialization of accounts_all with its columns."
    ),
)
def accounts_loaded(context: dg.SensorEvaluationContext, lakehouse: Lakehouse) -> dg.SensorResult | dg.SkipReason:
    """The cursor is the last snapshot and schema seen, so one load triggers at most once; reads metadata only."""
    table = lakehouse.name(lakehouse.accounts_table)
    if not lakehouse.spark.session.catalog.tableExists(table):
        return dg.SkipReason(f"{lakehouse.accounts_table} does not exist yet")
    current = latest_snapshot(lakehouse.spark, table)
    columns = source_columns(lakehouse)
    snapshot = None if current is None else str(current["snapshot_id"])
    cursor = f"{snapshot}/{hashlib.sha256(repr(columns).encode()).hexdigest()[:12]}"
    if current is None or cursor == context.cursor:
        return dg.SkipReason(f"no new load: {lakehouse.accounts_table} is still at snapshot {snapshot}")
    # what the column_schema_change check compares (monitors.py): the table as of each load or schema change
    loaded = dg.AssetMaterialization(
        asset_key=accounts_all.key,
        description=f"snapshot {snapshot}",
        metadata={  # the keys of Dagster's TableMetadataSet, which dagster 1.13 does not export
            "dagster/column_schema": column_schema(columns),
            "dagster/table_name": table,
            "dagster/row_count": int(current.get("total-records", 0)),
            "snapshot_id": snapshot,
        },
    )
    if snapshot == (context.cursor or "").split("/")[0]:  # the columns changed, no records came
        return dg.SensorResult(skip_reason=f"{table}: new column schema", asset_events=[loaded], cursor=cursor)
    lakehouse.ensure_tables()
    watermark = lakehouse.watermark()
    loads = lakehouse.pending_loads(watermark)
    last = MONTHLY.get_last_partition_key()
    assert last is not None
    needed = required_range([load.month for load in loads], last, lakehouse.layout.reach)
    if needed is None:
        skip = f"snapshot {snapshot}: every record is applied already"
        return dg.SensorResult(skip_reason=skip, asset_events=[loaded], cursor=cursor)
    partitions = set(MONTHLY.get_partition_keys())
    observations = [
        dg.AssetObservation(
            asset_key=accounts_all.key,
            partition=load.month,
            metadata={
                "snapshot_id": snapshot,
                "files_with_unapplied_records": load.files,
                "records_in_those_files": load.records,
                "max_base_ts": str(load.max_base_ts),
                "watermark": str(watermark),
            },
        )
        for load in loads
        if load.month in partitions
    ]
    context.log.info(f"snapshot {snapshot}: unapplied records in {[load.month for load in loads]}; run {needed}")
    request = dg.RunRequest(
        run_key=f"accounts_all@{snapshot}",
        tags={**range_tags(*needed), "backfill/accounts_all_snapshot": snapshot},
    )
    return dg.SensorResult(run_requests=[request], asset_events=[loaded, *observations], cursor=cursor)
