"""Spark IO manager: asset outputs live in Iceberg tables partitioned by `rpt_as_of_mo`."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import DataFrame

from backfill_assets.contracts.tables import create_table
from backfill_assets.resources.spark import SparkIceberg, latest_snapshot
from backfill_assets.transforms.months import in_months


class IcebergPartitionIOManager(dg.ConfigurableIOManager):
    """Stores each asset in `<catalog>.<namespace>.<asset name>`, one Iceberg partition per month.

    An output for one month or a range replaces exactly those partitions in one atomic commit
    (months without rows end up empty); an input loads the requested months, and months never
    materialised load as empty. Assets declare their columns as `spark_schema` (a Spark DDL
    string) in their definition metadata so that empty inputs still have a schema.
    """

    spark: SparkIceberg

    def _table(self, asset_key: dg.AssetKey) -> str:
        return self.spark.table(asset_key.path[-1])

    def _ensure(self, table: str, ddl: str) -> None:
        self.spark.session.sql(create_table(table, ddl, partitioned=True))

    def handle_output(self, context: dg.OutputContext, obj: DataFrame) -> None:
        table = self._table(context.asset_key)
        keys = context.asset_partition_keys
        self._ensure(table, str(context.definition_metadata["spark_schema"]))
        obj.where(in_months(keys)).writeTo(table).overwrite(in_months(keys))
        snapshot = latest_snapshot(self.spark, table) or {}
        context.add_output_metadata(
            {
                "table": table,
                "partitions_replaced": len(keys),
                "rows_written": int(snapshot.get("added-records", 0)),
                "rows_replaced": int(snapshot.get("deleted-records", 0)),
                "snapshot_id": str(snapshot.get("snapshot_id")),
            }
        )

    def load_input(self, context: dg.InputContext) -> DataFrame:
        upstream = context.upstream_output
        assert upstream is not None, "inputs of this IO manager come from assets"
        table = self._table(context.asset_key)
        self._ensure(table, str(upstream.definition_metadata["spark_schema"]))
        frame = self.spark.session.table(table)
        if not context.has_asset_partitions:
            return frame
        keys = context.asset_partition_keys
        context.log.info(f"loading {table} for {len(keys)} month(s): {keys[0]} … {keys[-1]}")
        return frame.where(in_months(keys))
