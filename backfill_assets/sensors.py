"""Sensor: a new load into accounts_all requests one run over the partitions its records reach."""

from __future__ import annotations

import dagster as dg

from backfill_assets.assets import accounts_all
from backfill_assets.jobs import backfill_job, range_tags
from backfill_assets.partitions import MONTHLY
from backfill_assets.planning import required_range
from backfill_assets.resources.lakehouse import Lakehouse


@dg.sensor(
    job=backfill_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Watches accounts_all's Iceberg snapshots. A new snapshot with unapplied records requests one run over"
        " late month m … m+35 (clipped to the last month) and reports the months it found as observations."
    ),
)
def accounts_loaded(context: dg.SensorEvaluationContext, lakehouse: Lakehouse) -> dg.SensorResult | dg.SkipReason:
    """The cursor is the last snapshot seen, so one load triggers at most once; reads metadata only."""
    if not lakehouse.spark.session.catalog.tableExists(lakehouse.name(lakehouse.accounts_table)):
        return dg.SkipReason(f"{lakehouse.accounts_table} does not exist yet")
    snapshot = lakehouse.snapshot_id(lakehouse.accounts_table)
    if snapshot is None or str(snapshot) == context.cursor:
        return dg.SkipReason(f"no new load: {lakehouse.accounts_table} is still at snapshot {snapshot}")
    lakehouse.ensure_tables()
    watermark = lakehouse.watermark()
    loads = lakehouse.pending_loads(watermark)
    last = MONTHLY.get_last_partition_key()
    assert last is not None
    needed = required_range([load.month for load in loads], last)
    cursor = str(snapshot)
    if needed is None:
        return dg.SensorResult(skip_reason=f"snapshot {snapshot}: every record is applied already", cursor=cursor)
    partitions = set(MONTHLY.get_partition_keys())
    observations = [
        dg.AssetObservation(
            asset_key=accounts_all.key,
            partition=load.month,
            metadata={
                "snapshot_id": cursor,
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
        tags={**range_tags(*needed), "backfill/accounts_all_snapshot": cursor},
    )
    return dg.SensorResult(run_requests=[request], asset_events=observations, cursor=cursor)
