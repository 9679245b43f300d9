"""What waits in accounts_all: the loads with records newer than the watermark, and how long they have waited.

Read from Iceberg metadata only (the `entries` and `snapshots` tables), never from the records: the
`load_freshness` check (`monitors.py`) asks this every hour, and a scan of accounts_all would cost
more than the backfill it watches. A load is the snapshot that added a data file; a file holds
pending records when its greatest `base_ts` is later than the watermark (`Lakehouse.pending_loads`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import functions as F

from backfill_assets.resources.lakehouse import Lakehouse


@dataclass(frozen=True)
class WaitingLoad:
    """One snapshot of accounts_all that added files with pending records."""

    snapshot_id: int
    committed_at: dt.datetime | None  # None: the snapshot has been expired, so it is older than every one kept
    months: tuple[str, ...]
    records: int  # records in those files (some may be applied already)

    def hours_waited(self, now: dt.datetime) -> float | None:
        return None if self.committed_at is None else (now - self.committed_at).total_seconds() / 3600


@dataclass(frozen=True)
class Waiting:
    """Every waiting load, oldest first, and the watermark they are newer than."""

    watermark: dt.datetime | None
    loads: tuple[WaitingLoad, ...]

    @property
    def oldest(self) -> WaitingLoad | None:
        return self.loads[0] if self.loads else None

    @property
    def months(self) -> list[str]:
        return sorted({m for load in self.loads for m in load.months})

    def overdue(self, now: dt.datetime, limit_hours: float) -> bool:
        """Whether the oldest load has waited longer than the limit (an expired snapshot has)."""
        if self.oldest is None:
            return False
        hours = self.oldest.hours_waited(now)
        return hours is None or hours > limit_hours


def waiting_loads(lakehouse: Lakehouse) -> Waiting | None:
    """The loads of accounts_all newer than the applied watermark; None when there is no accounts_all.

    Only files whose greatest `base_ts` passes the watermark count: a record with a NULL `base_ts`
    can never be applied (a run rejects it), so it would otherwise keep its load waiting for ever.
    """
    session = lakehouse.spark.session
    table = lakehouse.name(lakehouse.accounts_table)
    if not session.catalog.tableExists(table):
        return None
    lakehouse.ensure_tables()  # as the sensor does: the watermark's tables exist before the first run
    watermark = lakehouse.watermark()
    entries = session.table(f"{table}.entries").where((F.col("status") < 2) & (F.col("data_file.content") == 0))
    if watermark is not None:  # a literal, as in Lakehouse.pending_loads: read in the process's time zone
        entries = entries.where(F.col("readable_metrics.base_ts.upper_bound") > F.lit(watermark))
    month = F.coalesce(F.col("data_file.partition.rpt_as_of_mo"), F.lit("NULL"))
    # epoch microseconds: an instant, whatever time zone Spark or this process is in
    snapshots = session.table(f"{table}.snapshots").select("snapshot_id", F.unix_micros("committed_at").alias("at"))
    rows = (
        entries.groupBy("snapshot_id")
        .agg(F.sort_array(F.collect_set(month)).alias("months"), F.sum("data_file.record_count").alias("records"))
        .join(snapshots, "snapshot_id", "left")
        .collect()
    )
    loads = [
        WaitingLoad(
            int(r["snapshot_id"]),
            None if r["at"] is None else dt.datetime.fromtimestamp(r["at"] / 1e6, dt.UTC),
            tuple(r["months"]),
            int(r["records"]),
        )
        for r in rows
    ]
    oldest_first = sorted(loads, key=lambda load: (load.committed_at is not None, load.committed_at, load.snapshot_id))
    return Waiting(watermark, tuple(oldest_first))


def source_columns(lakehouse: Lakehouse) -> list[tuple[str, str]]:
    """accounts_all's columns as (name, Spark type), from the catalog (no Spark job)."""
    schema = lakehouse.spark.session.table(lakehouse.name(lakehouse.accounts_table)).schema
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]
