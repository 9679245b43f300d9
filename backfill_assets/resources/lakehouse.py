"""The bureau's tables: where they are, the applied-records watermark, and the all-or-nothing commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.io_manager import latest_snapshot
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.tables import SUMMARY, ddl

STATE_DDL = (
    "applied_through timestamp, run_id string, committed_at timestamp, summary_snapshot bigint, latest_snapshot bigint"
)


@dataclass(frozen=True)
class PendingLoad:
    """Data files of one month that hold unapplied records (their records may include applied ones)."""

    month: str
    files: int
    records: int
    max_base_ts: dt.datetime | None


@dataclass(frozen=True)
class Commit:
    """What a successful commit left behind."""

    summary_snapshot: int | None
    latest_snapshot: int | None
    summary_rows_written: int
    latest_rows_written: int


class Lakehouse(dg.ConfigurableResource):
    """Names of the source and target tables, and the commit protocol that keeps them consistent."""

    spark: SparkIceberg
    accounts_table: str = Field(default="accounts_all", description="Source table of account records.")
    summary_table: str = Field(default="summary", description="Summary table, one row per account and month.")
    latest_table: str = Field(default="latest_summary", description="One row per account: its latest summary row.")
    state_table: str = Field(default="backfill_state", description="Watermark and outcome of each committed run.")

    def name(self, table: str) -> str:
        return self.spark.table(table)

    def snapshot_id(self, table: str) -> int | None:
        snap = latest_snapshot(self.spark, self.name(table))
        return None if snap is None else int(snap["snapshot_id"])

    def read(self, table: str, snapshot_id: int | None = None) -> DataFrame:
        """A table as of one snapshot, so that a run never sees its own commits half-way."""
        reader = self.spark.session.read
        if snapshot_id is not None:
            reader = reader.option("snapshot-id", snapshot_id)
        return reader.table(self.name(table))

    def ensure_tables(self) -> None:
        """Create empty summary, latest and state tables on first use (each with a first snapshot)."""
        session = self.spark.session
        specs = {
            self.summary_table: (ddl(SUMMARY), "PARTITIONED BY (rpt_as_of_mo)"),
            self.latest_table: (ddl(SUMMARY), ""),
            self.state_table: (STATE_DDL, ""),
        }
        existing = {
            r["tableName"] for r in session.sql(f"SHOW TABLES IN {self.spark.catalog}.{self.spark.namespace}").collect()
        }
        for table, (columns, partitioning) in specs.items():
            if table not in existing:
                session.sql(f"CREATE TABLE {self.name(table)} ({columns}) USING iceberg {partitioning}")
                session.sql(f"INSERT INTO {self.name(table)} SELECT * FROM {self.name(table)} WHERE false")

    def watermark(self) -> dt.datetime | None:
        """Every record with base_ts <= this is applied. Before any run: the greatest base_ts in summary."""
        session = self.spark.session
        row = session.sql(f"SELECT max(applied_through) AS w FROM {self.name(self.state_table)}").collect()[0]
        if row["w"] is not None:
            return row["w"]
        files = f"{self.name(self.summary_table)}.files"
        return session.sql(f"SELECT max(readable_metrics.base_ts.upper_bound) AS w FROM {files}").collect()[0]["w"]

    def reset_watermark(self) -> None:
        """Forget the applied-through marks of past runs (SPEC §4.5).

        After `summary` is imported or regenerated, the next run must treat as applied exactly the
        records not newer than the greatest base_ts in summary; an older run's mark could be later
        than that (records silently skipped) or earlier (needless re-application).
        """
        state = self.name(self.state_table)
        if self.spark.session.catalog.tableExists(state):
            self.spark.session.sql(f"DELETE FROM {state} WHERE true")

    def pending_months(self, watermark: dt.datetime | None) -> list[str]:
        """Months of accounts_all holding records newer than the watermark (from file metadata only)."""
        return [load.month for load in self.pending_loads(watermark)]

    def pending_loads(self, watermark: dt.datetime | None) -> list[PendingLoad]:
        """Per month, the data files of accounts_all with records newer than the watermark (metadata only).

        The watermark goes in as a literal, not as SQL text: Spark reads a Python datetime in the
        process's time zone, the same one `watermark()` returned it in.
        """
        table = self.name(self.accounts_table)
        if not self.spark.session.catalog.tableExists(table):
            raise dg.Failure(f"{table} does not exist: import account records first (backfill-assets import)")
        files = self.spark.session.table(f"{table}.files")
        metrics = F.col("readable_metrics.base_ts")
        if watermark is not None:  # a file with NULL base_ts holds records no run can apply: pending, to be refused
            files = files.where((metrics["upper_bound"] > F.lit(watermark)) | (metrics["null_value_count"] > 0))
        rows = (
            files.groupBy(F.col("partition.rpt_as_of_mo").alias("m"))
            .agg(F.count("*").alias("files"), F.sum("record_count").alias("records"), F.max(metrics["upper_bound"]))
            .orderBy("m")
            .collect()
        )
        return [PendingLoad(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]

    def commit(
        self, rows: DataFrame, latest: DataFrame, months: tuple[str, str], applied_through: dt.datetime, run_id: str
    ) -> Commit:
        """MERGE the new rows into summary and latest_summary, then advance the watermark.

        Three Iceberg commits; if any fails, the tables already committed are rolled back to the
        snapshots they had before, so a failed run leaves everything as it was.
        """
        session = self.spark.session
        before = {t: self.snapshot_id(t) for t in (self.summary_table, self.latest_table)}
        try:
            rows.createOrReplaceTempView("_backfill_rows")
            session.sql(
                f"""MERGE INTO {self.name(self.summary_table)} t USING _backfill_rows s
                    ON t.cons_acct_key = s.cons_acct_key AND t.rpt_as_of_mo = s.rpt_as_of_mo
                       AND t.rpt_as_of_mo BETWEEN '{months[0]}' AND '{months[1]}'
                    WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"""
            )
            summary_snap = latest_snapshot(self.spark, self.name(self.summary_table)) or {}
            latest.createOrReplaceTempView("_backfill_latest")
            session.sql(
                f"""MERGE INTO {self.name(self.latest_table)} t USING _backfill_latest s
                    ON t.cons_acct_key = s.cons_acct_key
                    WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"""
            )
            latest_snap = latest_snapshot(self.spark, self.name(self.latest_table)) or {}
            summary_id = int(summary_snap["snapshot_id"]) if summary_snap else None
            latest_id = int(latest_snap["snapshot_id"]) if latest_snap else None
            state = session.createDataFrame(
                [(applied_through, run_id, None, summary_id, latest_id)], STATE_DDL
            ).withColumn("committed_at", F.current_timestamp())
            state.writeTo(self.name(self.state_table)).append()
        except BaseException:
            self.rollback(before)
            raise
        return Commit(
            summary_id,
            latest_id,
            _changed(summary_snap, before[self.summary_table]),
            _changed(latest_snap, before[self.latest_table]),
        )

    def rollback(self, snapshots: dict[str, int | None]) -> None:
        """Put each table back on the snapshot it had (no-op for a table that did not move)."""
        for table, snapshot in snapshots.items():
            if snapshot is not None and self.snapshot_id(table) != snapshot:
                self.spark.session.sql(
                    f"CALL {self.spark.catalog}.system.rollback_to_snapshot("
                    f"'{self.spark.namespace}.{table}', {snapshot})"
                )


def _changed(snapshot: dict[str, str], before: int | None) -> int:
    """Rows a MERGE wrote, from the snapshot summary (0 when the MERGE committed nothing)."""
    if not snapshot or int(snapshot["snapshot_id"]) == before:
        return 0
    return int(snapshot.get("added-records", 0))
