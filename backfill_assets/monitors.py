"""Checks that watch the source, not a run: a load left waiting, and accounts_all's columns changing.

Both are non-blocking WARNs evaluated on their own (the asset's Checks tab → Execute, or the hourly
`source_checks_schedule`, off until turned on), never by `backfill_job`: right after a run has
applied everything the freshness check could only pass. Dagster runs every check of the assets a
UI launch selects, so "Materialize all" on the backfill group runs `load_freshness` too, as one
more step after the commit: cheap, and what it then says is whether a load is still waiting.
"""

# No `from __future__ import annotations`: Dagster checks the resource annotations at definition time.

import datetime as dt

import dagster as dg

from backfill_assets.assets import accounts_all
from backfill_assets.operations.loads import waiting_loads
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.quality import DataQuality

FRESHNESS_CHECK = "load_freshness"
FRESHNESS_KEY = dg.AssetCheckKey(dg.AssetKey("summary_backfilled"), FRESHNESS_CHECK)


@dg.asset_check(
    asset=FRESHNESS_KEY.asset_key,
    name=FRESHNESS_CHECK,
    blocking=False,
    description=(
        "WARN when the oldest load of accounts_all with records newer than the watermark has waited longer than"
        " DataQuality.max_load_wait_hours since its snapshot was committed (Iceberg metadata only)."
        " Not part of backfill_job: run it on demand or with source_checks_schedule."
    ),
)
def load_freshness(lakehouse: Lakehouse, quality: DataQuality) -> dg.AssetCheckResult:
    """How long the oldest unapplied load has waited: a stopped sensor, a failing run or a dead daemon shows here."""
    now, limit = dt.datetime.now(dt.UTC), quality.max_load_wait_hours
    waiting = waiting_loads(lakehouse)
    metadata: dict[str, dg.RawMetadataValue] = {"limit_hours": float(limit)}
    if waiting is None:
        return dg.AssetCheckResult(passed=True, description="accounts_all does not exist yet", metadata=metadata)
    metadata |= {"watermark": str(waiting.watermark), "months_pending": len(waiting.months)}
    oldest = waiting.oldest
    if oldest is None:
        return dg.AssetCheckResult(passed=True, description="no load is waiting", metadata=metadata)
    hours = oldest.hours_waited(now)
    metadata |= {
        "oldest_snapshot_id": str(oldest.snapshot_id),
        "oldest_committed_at": oldest.committed_at.isoformat() if oldest.committed_at else "expired",
        "hours_waited": round(hours, 3) if hours is not None else "unknown (snapshot expired)",
        "oldest_months": ", ".join(oldest.months),
        "loads_waiting": len(waiting.loads),
        "pending_months": ", ".join(waiting.months),
    }
    waited = f"{hours:.1f} h" if hours is not None else "longer than the snapshots kept"
    description = (
        f"accounts_all snapshot {oldest.snapshot_id} (months {', '.join(oldest.months)}) has waited {waited}"
        f" unapplied; {len(waiting.months)} month(s) pending"
    )
    overdue = waiting.overdue(now, limit)
    return dg.AssetCheckResult(
        passed=not overdue,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{description}, more than the limit of {limit:g} h" if overdue else description,
        metadata=metadata,
    )


# Compares the column schema of accounts_all's two latest materializations, which the load sensor
# reports for each new snapshot or schema (sensors.py); WARN naming each column added, removed or retyped.
source_schema_checks = dg.build_column_schema_change_checks(assets=[accounts_all.key])
SCHEMA_KEYS = [key for checks in source_schema_checks for key in checks.check_keys]

source_checks_job = dg.define_asset_job(
    "source_checks_job",
    selection=dg.AssetSelection.checks(FRESHNESS_KEY, *SCHEMA_KEYS),
    description="Only the source checks (load_freshness, column_schema_change): materialises nothing.",
)
source_checks_schedule = dg.ScheduleDefinition(
    name="source_checks_schedule",
    job=source_checks_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly: is a load of accounts_all waiting too long, have its columns changed.",
)


def column_schema(columns: list[tuple[str, str]]) -> dg.TableSchema:
    """The `dagster/column_schema` of a table from its (name, Spark type) columns."""
    return dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in columns])
