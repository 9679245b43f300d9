"""The bureau's tables: where they are, how they are created and written, and the applied-records watermark."""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

import dagster as dg
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.layout import DEFAULT_LAYOUT, ENV, Layout, load_layout
from backfill_assets.contracts.tables import create_table, ddl
from backfill_assets.resources.spark import SparkIceberg, latest_snapshot

STATE_DDL = (
    "applied_through timestamp, run_id string, committed_at timestamp, summary_snapshot bigint, latest_snapshot bigint"
)
RUNS_DDL = (
    "run_id string, event string, at timestamp, host string, pid int,"
    " summary_snapshot bigint, latest_snapshot bigint, error string, rejects_snapshot bigint,"
    " records_i bigint, records_ii bigint, records_iii bigint, records_iv bigint, rejected bigint,"
    " summary_rows_written bigint, branch string, tag string, applied_through timestamp"
)
# columns the run log gained after its first release: added to an older warehouse's log (`_upgrade_run_log`)
_RUNS_ADDED = (
    "rejects_snapshot bigint",
    "records_i bigint, records_ii bigint, records_iii bigint, records_iv bigint, rejected bigint,"
    " summary_rows_written bigint",
    "branch string, tag string, applied_through timestamp",
)


def rejects_ddl(layout: Layout) -> str:
    """The rejects table: the record as delivered, with the run that rejected it and why (docs/spec.md §7)."""
    source = ddl(layout.accounts_all)
    return f"run_id string, rejected_at timestamp, rule string, message string, record_id string, {source}"


@functools.cache
def _layout(path: str) -> Layout:
    return load_layout(path) if path else DEFAULT_LAYOUT


WriteMode = Literal["merge-on-read", "copy-on-write", "table"]
_MODE_PROPERTIES = ("write.merge.mode", "write.update.mode", "write.delete.mode")
T = TypeVar("T")
# Answers that depend only on tables' current snapshots, which are immutable: kept for the process.
_BY_SNAPSHOTS: dict[tuple[Hashable, ...], object] = {}


@dataclass(frozen=True)
class PendingLoad:
    """Data files of one month that hold unapplied records (their records may include applied ones)."""

    month: str
    files: int
    records: int
    max_base_ts: dt.datetime | None


class Lakehouse(dg.ConfigurableResource):
    """Names of the source and target tables, and the commit protocol that keeps them consistent."""

    spark: SparkIceberg
    accounts_table: str = Field(default="accounts_all", description="Source table of account records.")
    summary_table: str = Field(default="summary", description="Summary table, one row per account and month.")
    latest_table: str = Field(default="latest_summary", description="One row per account: its latest summary row.")
    state_table: str = Field(default="backfill_state", description="Watermark and outcome of each committed run.")
    runs_table: str = Field(
        default="backfill_runs",
        description="Run log: each run's start (with the snapshots before it) and outcome; also the run lock.",
    )
    rejects_table: str = Field(
        default="backfill_rejects",
        description="Records that break a rule of docs/spec.md §7, as delivered, with the rule and the run.",
    )
    layout_file: str = Field(
        default_factory=lambda: os.environ.get(ENV, "").strip(),
        description=(
            "YAML file of the summary layout: its scalar columns, histories, history length and grid"
            " (docs/spec.md §8). From BACKFILL_LAYOUT; empty: the default layout of docs/spec.md §2."
        ),
    )
    write_mode: WriteMode = Field(
        default="merge-on-read",
        description=(
            "How the MERGE into summary and latest_summary writes: merge-on-read (only the changed rows plus"
            " position deletes; compact now and then), copy-on-write (rewrites every data file holding a"
            " changed row), or table (leave the tables' own write.merge.mode)."
        ),
    )

    def name(self, table: str) -> str:
        return self.spark.table(table)

    @property
    def layout(self) -> Layout:
        """The summary layout in force (read once per file; a wrong entry raises `LayoutError` naming it)."""
        return _layout(self.layout_file)

    def contract_table(self, table: str) -> str:
        """Catalog.namespace.name of a table of the contract (accounts_all, summary, latest_summary) as configured."""
        names = {
            "accounts_all": self.accounts_table,
            "summary": self.summary_table,
            "latest_summary": self.latest_table,
        }
        return self.name(names[table])

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
        """Create empty summary, latest, state, run-log and rejects tables on first use (each with a first snapshot)."""
        session = self.spark.session
        specs = {
            self.summary_table: self.layout.contracts["summary"].create_sql(self.name(self.summary_table)),
            self.latest_table: self.layout.contracts["latest_summary"].create_sql(self.name(self.latest_table)),
            **{
                table: create_table(self.name(table), columns, partitioned=False)
                for table, columns in (
                    (self.state_table, STATE_DDL),
                    (self.runs_table, RUNS_DDL),
                    (self.rejects_table, rejects_ddl(self.layout)),
                )
            },
        }
        existing = {
            r["tableName"] for r in session.sql(f"SHOW TABLES IN {self.spark.catalog}.{self.spark.namespace}").collect()
        }
        for table, create in specs.items():
            if table not in existing:
                session.sql(create)
                session.sql(f"INSERT INTO {self.name(table)} SELECT * FROM {self.name(table)} WHERE false")
        self._upgrade_run_log()

    def _upgrade_run_log(self) -> None:
        """Give an older release's run log the columns it lacks, in order (metadata changes): `rejects_snapshot`,
        then a successful outcome's counts (records per case, rejected records, summary rows written)."""
        runs = self.name(self.runs_table)
        has = set(self.spark.session.table(runs).columns)
        for columns in _RUNS_ADDED:
            if columns.split()[0] not in has:
                self.spark.session.sql(f"ALTER TABLE {runs} ADD COLUMNS ({columns})")

    def _by_snapshots(self, question: Hashable, tables: tuple[str, ...], compute: Callable[[], T]) -> T:
        """`compute()`, or its earlier answer to `question` for the same current snapshots of `tables`."""
        warehouse = self.spark.spark_conf()[f"spark.sql.catalog.{self.spark.catalog}.warehouse"]
        key = (question, warehouse, *((self.name(t), self.snapshot_id(t)) for t in tables))
        if key not in _BY_SNAPSHOTS:
            _BY_SNAPSHOTS[key] = compute()
        return cast(T, _BY_SNAPSHOTS[key])

    def watermark(self) -> dt.datetime | None:
        """Every record with base_ts <= this is applied. Before any run: the greatest base_ts in summary.

        Every step of a run asks: answered once per state of the two tables it is read from.
        """
        return self._by_snapshots("watermark", (self.state_table, self.summary_table), self._watermark)

    def _watermark(self) -> dt.datetime | None:
        session = self.spark.session
        row = session.sql(f"SELECT max(applied_through) AS w FROM {self.name(self.state_table)}").collect()[0]
        if row["w"] is not None:
            return row["w"]
        files = f"{self.name(self.summary_table)}.files"
        return session.sql(f"SELECT max(readable_metrics.base_ts.upper_bound) AS w FROM {files}").collect()[0]["w"]

    def reset_watermark(self) -> None:
        """Forget the applied-through marks of past runs (docs/spec.md §4.5).

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
        question = ("pending loads", watermark)
        return list(self._by_snapshots(question, (self.accounts_table,), lambda: self._pending_loads(watermark)))

    def _pending_loads(self, watermark: dt.datetime | None) -> tuple[PendingLoad, ...]:
        """One scan of the files metadata table, grouped here: a table has a few files per month, and a
        `groupBy().orderBy()` in Spark cost four jobs."""
        files = self.spark.session.table(f"{self.name(self.accounts_table)}.files")
        metrics = F.col("readable_metrics.base_ts")
        if watermark is not None:  # a file with NULL base_ts holds records no run can apply: pending, to be rejected
            files = files.where((metrics["upper_bound"] > F.lit(watermark)) | (metrics["null_value_count"] > 0))
        # records without a month are pending under 'NULL', a month that is no partition: a run still rejects them
        month = F.coalesce(F.col("partition.rpt_as_of_mo"), F.lit("NULL"))
        loads: dict[str, PendingLoad] = {}
        for m, records, upper in files.select(month, "record_count", metrics["upper_bound"]).collect():
            load = loads.get(m, PendingLoad(m, 0, 0, None))
            newest = max((t for t in (load.max_base_ts, upper) if t is not None), default=None)
            loads[m] = PendingLoad(m, load.files + 1, load.records + int(records), newest)
        return tuple(loads[m] for m in sorted(loads))

    def record_rejects(self, rows: DataFrame) -> None:
        """Append a run's rejected records (`transforms.rejects.rejects`) in one commit.

        Written under the run lock, so a failed run's rejects are rolled back with its tables (`_restore`)
        and the next run reports them again.
        """
        rows.writeTo(self.name(self.rejects_table)).append()

    def set_write_mode(self, table: str) -> None:
        """Give the table the configured MERGE mode (a metadata change, no snapshot; skipped when it has it).

        Merge-on-read is the default because a backfill changes a small share of the rows of each
        month it reaches: copy-on-write would rewrite all of those months' data files every run.
        """
        if self.write_mode == "table":
            return
        name = self.name(table)
        properties = {r["key"]: r["value"] for r in self.spark.session.sql(f"SHOW TBLPROPERTIES {name}").collect()}
        if any(properties.get(p) != self.write_mode for p in _MODE_PROPERTIES):
            assignments = ", ".join(f"'{p}' = '{self.write_mode}'" for p in _MODE_PROPERTIES)
            self.spark.session.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({assignments})")

    def rollback(self, snapshots: dict[str, int | None]) -> None:
        """Put each table back on the snapshot it had (no-op for a table that did not move)."""
        for table, snapshot in snapshots.items():
            if snapshot is not None and self.snapshot_id(table) != snapshot:
                self.spark.session.sql(
                    f"CALL {self.spark.catalog}.system.rollback_to_snapshot("
                    f"'{self.spark.namespace}.{table}', {snapshot})"
                )
