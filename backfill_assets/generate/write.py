"""Writing a generated data set as the Iceberg tables `accounts_all`, `summary` and `latest_summary`."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.conform import conform
from backfill_assets.contracts.tables import PARTITION
from backfill_assets.generate.dataset import GeneratedData
from backfill_assets.resources.lakehouse import Lakehouse


def _write(df: DataFrame, lakehouse: Lakehouse, table: str, replace: bool) -> None:
    """Create or replace (or append to) the Iceberg table `table` (a contract name) under its configured name.

    The rows are conformed to the table's contract. A partitioned table gets its rows sorted by
    month within each task and written without Iceberg's default hash distribution: the same
    clustering, without shuffling the wide rows.
    """
    contract = lakehouse.layout.contracts[table]
    name = lakehouse.contract_table(table)
    df = conform(df, contract.schema)
    if contract.partitioned:
        df = df.sortWithinPartitions(PARTITION)
    writer = df.writeTo(name)
    if contract.partitioned:
        writer = writer.partitionedBy(F.col(PARTITION)).option("distribution-mode", "none")
    if replace:
        writer.createOrReplace()
    elif lakehouse.spark.session.catalog.tableExists(name):
        writer.append()
    else:
        writer.create()


def write(generated: GeneratedData, lakehouse: Lakehouse, replace: bool = True) -> None:
    """Write `accounts_all` (history, then the late batch), `summary` and `latest_summary` as Iceberg tables,
    under the table names configured on `lakehouse` (`accounts_table`, `summary_table`, `latest_table`).

    With `replace`, the tables are created or replaced; otherwise rows are appended (tables created
    if missing). The late batch is appended as a load of its own, in files of its own, as a real
    delivery arrives: a run then finds it from file metadata without scanning the history.
    """
    _write(generated.history, lakehouse, "accounts_all", replace=replace)
    _write(generated.late, lakehouse, "accounts_all", replace=False)
    _write(generated.summary, lakehouse, "summary", replace=replace)
    _write(generated.latest_summary, lakehouse, "latest_summary", replace=replace)
