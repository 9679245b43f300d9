"""Spark IO manager: asset outputs live in Iceberg tables partitioned by `rpt_as_of_mo`."""

from __future__ import annotations

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from backfill_assets.contracts.tables import create_table, ddl
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.spark import latest_snapshot
from backfill_assets.transforms.months import in_months


class IcebergPartitionIOManager(dg.ConfigurableIOManager):
    """Stores each asset in `<catalog>.<namespace>.<asset name>`, one Iceberg partition per month.

    An output for one month or a range replaces exactly those partitions in one atomic commit
    (months without rows end up empty); an input loads the requested months, and months never
    materialised load as empty. An asset names its columns in its definition metadata, so that
    empty inputs still have a schema: `contract`, a table of the summary layout (its columns follow
    `BACKFILL_LAYOUT`), or `spark_schema`, a Spark DDL string. A stored table whose columns differ
    from its contract (written under another layout) is replaced: it holds derived data only.
    """

    lakehouse: Lakehouse

    def _table(self, asset_key: dg.AssetKey) -> str:
        return self.lakehouse.spark.table(asset_key.path[-1])

    def _schema(self, metadata: dg.ArbitraryMetadataMapping) -> StructType:
        if "contract" in metadata:
            return self.lakehouse.layout.contracts[str(metadata["contract"])].schema
        schema = self.lakehouse.spark.session.createDataFrame([], str(metadata["spark_schema"])).schema
        return schema

    def _ensure(self, table: str, schema: StructType) -> None:
        session = self.lakehouse.spark.session
        if session.catalog.tableExists(table):
            stored = [(f.name, f.dataType.simpleString()) for f in session.table(table).schema]
            if stored == [(f.name, f.dataType.simpleString()) for f in schema]:
                return
            session.sql(f"DROP TABLE {table}")
        session.sql(create_table(table, ddl(schema), partitioned=True))

    def handle_output(self, context: dg.OutputContext, obj: DataFrame) -> None:
        table = self._table(context.asset_key)
        keys = context.asset_partition_keys
        schema = self._schema(context.definition_metadata)
        self._ensure(table, schema)
        obj.where(in_months(keys)).writeTo(table).overwrite(in_months(keys))
        snapshot = latest_snapshot(self.lakehouse.spark, table) or {}
        context.add_output_metadata(
            {
                "table": table,
                "partitions_replaced": len(keys),
                "rows_written": int(snapshot.get("added-records", 0)),
                "rows_replaced": int(snapshot.get("deleted-records", 0)),
                "snapshot_id": str(snapshot.get("snapshot_id")),
                "dagster/column_schema": column_schema(schema),
            }
        )

    def load_input(self, context: dg.InputContext) -> DataFrame:
        upstream = context.upstream_output
        assert upstream is not None, "inputs of this IO manager come from assets"
        table = self._table(context.asset_key)
        self._ensure(table, self._schema(upstream.definition_metadata))
        frame = self.lakehouse.spark.session.table(table)
        if not context.has_asset_partitions:
            return frame
        keys = context.asset_partition_keys
        context.log.info(f"loading {table} for {len(keys)} month(s): {keys[0]} … {keys[-1]}")
        return frame.where(in_months(keys))


def column_schema(schema: StructType) -> dg.TableSchema:
    """A table's columns as the Dagster UI shows them (an asset's Columns tab)."""
    return dg.TableSchema(columns=[dg.TableColumn(f.name, f.dataType.simpleString()) for f in schema.fields])
