"""The jobs: the backfill group over a partition range (CLI, UI launches and the sensor run it), and the
table maintenance with its schedule (stopped until an operator turns it on)."""

# no `from __future__ import annotations`: Dagster reads the op's config class from its annotation
import dagster as dg
from pydantic import Field

from backfill_assets.monitors import FRESHNESS_KEY
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.maintenance import KEEP_DAYS, maintain
from backfill_assets.verify_check import VERIFY_CHECK_KEY

# load_freshness watches for loads no run has applied: it runs on its own (monitors.py), not after each
# run; the whole-table audit (`summary_verified`) runs on demand only: a run checks what it reads and writes
backfill_job = dg.define_asset_job(
    "backfill_job",
    selection=dg.AssetSelection.groups("backfill") - dg.AssetSelection.checks(FRESHNESS_KEY, VERIFY_CHECK_KEY),
    description="Apply every unapplied record of accounts_all to summary and latest_summary.",
)
BACKFILL_JOB = backfill_job.name


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover partitions first … last (what a single-run UI backfill sets)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


class MaintainConfig(dg.Config):
    keep_days: int = Field(
        default=KEEP_DAYS,
        ge=1,
        description="Expire snapshots older than this many days, except those the runs of that time started from"
        " or committed, and tagged ones.",
    )


@dg.op(out=dg.Out(dg.Nothing))
def maintain_tables(context: dg.OpExecutionContext, config: MaintainConfig, lakehouse: Lakehouse) -> dg.Output[None]:
    """`backfill-assets maintain` as an op: compact, expire snapshots, remove orphan files, under the run lock."""
    upkeep = maintain(lakehouse, f"maintain-{context.run_id}", config.keep_days)
    return dg.Output(
        None,
        metadata={
            "window_runs": len(upkeep.window_runs),
            **{
                f"{t.table}": f"expired {len(t.expired)}, kept {len(t.kept)} snapshots; {len(t.orphans)} orphan files"
                for t in upkeep.tables
            },
        },
    )


@dg.job(description="Compact the tables, expire snapshots outside the rollback window, remove orphan files.")
def maintain_job() -> None:
    maintain_tables()


maintain_schedule = dg.ScheduleDefinition(
    name="maintain_daily",
    job=maintain_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="maintain_job every day at 03:00 UTC; stopped until an operator starts it.",
)
