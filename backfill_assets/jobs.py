"""The one job: the backfill group over a partition range (CLI, UI launches and the sensor run it)."""

from __future__ import annotations

import dagster as dg

from backfill_assets.monitors import FRESHNESS_KEY

# load_freshness watches for loads no run has applied: it runs on its own (monitors.py), not after each run
backfill_job = dg.define_asset_job(
    "backfill_job",
    selection=dg.AssetSelection.groups("backfill") - dg.AssetSelection.checks(FRESHNESS_KEY),
    description="Apply every unapplied record of accounts_all to summary and latest_summary.",
)
BACKFILL_JOB = backfill_job.name


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover partitions first … last (what a single-run UI backfill sets)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
