"""Writing a generated data set as the Iceberg tables `accounts_all`, `summary` and `latest_summary`."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.tables import ACCOUNTS_ALL, PARTITION, SUMMARY
from backfill_assets.contracts.validation import conform
from backfill_assets.generate.dataset import GeneratedData
from backfill_assets.resources.spark import SparkIceberg


def _write(df: DataFrame, spark_resource: SparkIceberg, name: str, partitioned: bool, replace: bool) -> None:
    """Create or replace (or append to) one Iceberg table.

    A partitioned table gets its rows sorted by month within each task and written without
    Iceberg's default hash distribution: the same clustering, without shuffling the wide rows.
    """
    table = spark_resource.table(name)
    if partitioned:
        df = df.sortWithinPartitions(PARTITION)
    writer = df.writeTo(table)
    if partitioned:
        writer = writer.partitionedBy(F.col(PARTITION)).option("distribution-mode", "none")
    if replace:
        writer.createOrReplace()
    elif spark_resource.session.catalog.tableExists(table):
        writer.append()
    else:
        writer.create()


def write(generated: GeneratedData, spark_resource: SparkIceberg, replace: bool = True) -> None:
    """Write `accounts_all` (history, then the late batch), `summary` and `latest_summary` as Iceberg tables.

    With `replace`, the tables are created or replaced; otherwise rows are appended (tables created
    if missing). The late batch is appended as a load of its own, in files of its own, as a real
    delivery arrives: a run then finds it from file metadata without scanning the history.
    """
    _write(conform(generated.history, ACCOUNTS_ALL), spark_resource, "accounts_all", partitioned=True, replace=replace)
    _write(conform(generated.late, ACCOUNTS_ALL), spark_resource, "accounts_all", partitioned=True, replace=False)
    _write(conform(generated.summary, SUMMARY), spark_resource, "summary", partitioned=True, replace=replace)
    latest = conform(generated.latest_summary, SUMMARY)
    _write(latest, spark_resource, "latest_summary", partitioned=False, replace=replace)
