"""The Iceberg IO manager: one partition or a range per call, exact replacement, empty months."""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at definition time.

import dagster as dg
import pytest
from dagster import AssetExecutionContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from backfill_assets.io_manager import IcebergPartitionIOManager
from backfill_assets.jobs import range_tags
from backfill_assets.partitions import MONTHLY
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.spark import SparkIceberg

SCHEMA = "cons_acct_key bigint, rpt_as_of_mo string, value int"
WIDER = f"{SCHEMA}, code string"  # the same asset's columns under another layout
# an input of months s-35 … s: a range of which some months were never materialised
HISTORY_WINDOW = dg.TimeWindowPartitionMapping(
    start_offset=-35, end_offset=0, allow_nonexistent_upstream_partitions=True
)


def make_assets(value: int, schema: str = SCHEMA) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=MONTHLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="spark_io",
        metadata={"spark_schema": schema},
    )
    def io_upstream(context: AssetExecutionContext, spark: SparkIceberg) -> DataFrame:
        # rows for every selected month but the first, so that one selected month ends up empty
        extra = ("x",) if schema == WIDER else ()
        rows = [(a, m, value, *extra) for m in context.partition_keys[1:] for a in (1, 2)]
        return spark.session.createDataFrame(rows, schema)

    @dg.asset(
        partitions_def=MONTHLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"io_upstream": dg.AssetIn(partition_mapping=HISTORY_WINDOW)},
    )
    def io_downstream(io_upstream: DataFrame) -> dg.MaterializeResult:
        months = sorted(r[0] for r in io_upstream.groupBy("rpt_as_of_mo").count().collect())
        return dg.MaterializeResult(metadata={"months": ",".join(months), "rows": io_upstream.count()})

    return [io_upstream, io_downstream]


@pytest.fixture
def resource(spark: SparkSession, spark_resource: SparkIceberg, request: pytest.FixtureRequest) -> SparkIceberg:
    fields = {k: getattr(spark_resource, k) for k in SparkIceberg.model_fields}
    res = SparkIceberg(**{**fields, "namespace": f"io_{request.node.name[:40].lower()}"})
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {res.catalog}.{res.namespace}")
    return res


def materialize(
    resource: SparkIceberg, value: int, first: str, last: str, select: str, schema: str = SCHEMA
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        make_assets(value, schema),
        selection=select,
        resources={"spark": resource, "spark_io": IcebergPartitionIOManager(lakehouse=Lakehouse(spark=resource))},
        tags=range_tags(first, last),
    )


def snapshots(spark: SparkSession, table: str) -> int:
    return spark.sql(f"SELECT count(*) FROM {table}.snapshots").collect()[0][0]


def test_range_replaces_exactly_its_partitions_in_one_commit(spark: SparkSession, resource: SparkIceberg) -> None:
    table = resource.table("io_upstream")
    materialize(resource, 1, "2024-01", "2024-06", "io_upstream")
    before = snapshots(spark, table)
    result = materialize(resource, 2, "2024-03", "2024-05", "io_upstream")
    assert snapshots(spark, table) == before + 1  # one atomic commit for the whole range
    rows = {(r["rpt_as_of_mo"], r["value"]) for r in spark.table(table).collect()}
    # 2024-03 is selected but has no rows this time: replaced by nothing; 04–05 rewritten; others kept
    assert rows == {("2024-02", 1), ("2024-04", 2), ("2024-05", 2), ("2024-06", 1)}
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows_written"].value == 4 and meta["rows_replaced"].value == 6
    assert meta["snapshot_id"].value == str(
        spark.sql(f"SELECT snapshot_id FROM {table}.snapshots ORDER BY committed_at DESC LIMIT 1").collect()[0][0]
    )


def test_single_partition(spark: SparkSession, resource: SparkIceberg) -> None:
    materialize(resource, 5, "2024-01", "2024-02", "io_upstream")
    dg.materialize(
        make_assets(6),
        selection="io_upstream",
        resources={"spark": resource, "spark_io": IcebergPartitionIOManager(lakehouse=Lakehouse(spark=resource))},
        partition_key="2024-02",
    )
    rows = spark.table(resource.table("io_upstream")).where(F.col("rpt_as_of_mo") == "2024-02").collect()
    assert rows == []  # the asset returns no rows for the first (only) selected month


def test_load_range_with_months_never_materialised(spark: SparkSession, resource: SparkIceberg) -> None:
    materialize(resource, 1, "2024-01", "2024-03", "io_upstream")
    result = materialize(resource, 1, "2024-03", "2024-04", "io_downstream")
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    # window 2021-04 … 2024-04 requested; only 2024-02, 2024-03 hold rows; the rest load as empty
    assert meta["months"].value == "2024-02,2024-03" and meta["rows"].value == 4


def test_load_before_any_materialisation_is_empty(spark: SparkSession, resource: SparkIceberg) -> None:
    result = materialize(resource, 1, "2024-03", "2024-04", "io_downstream")
    assert result.get_asset_materialization_events()[0].materialization.metadata["rows"].value == 0


def test_a_table_written_under_other_columns_is_replaced(spark: SparkSession, resource: SparkIceberg) -> None:
    """After a layout change an intermediate asset's stored columns differ: its table is made again, with the
    new columns, holding only what the new write put there (it holds derived data only)."""
    table = resource.table("io_upstream")
    materialize(resource, 1, "2024-01", "2024-04", "io_upstream")
    result = materialize(resource, 2, "2024-03", "2024-04", "io_upstream", WIDER)
    assert spark.table(table).columns == ["cons_acct_key", "rpt_as_of_mo", "value", "code"]
    assert {(r["rpt_as_of_mo"], r["value"], r["code"]) for r in spark.table(table).collect()} == {("2024-04", 2, "x")}
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == spark.table(table).columns
    materialize(resource, 3, "2024-03", "2024-04", "io_upstream", WIDER)  # the same columns: kept, no new table
    assert snapshots(spark, table) == 2
