"""Monthly partitions keyed `YYYY-MM`, and the 36-month reach of a month into later summaries."""

from __future__ import annotations

import os

import dagster as dg

from backfill_assets.contracts.tables import HISTORY_LENGTH

# The first month a record may have; set before the definitions load (it shapes the UI's partitions).
FIRST_MONTH = os.environ.get("BACKFILL_FIRST_MONTH", "2015-01")

# end_offset=1: the current month is a partition too, so this month's loads are never refused.
MONTHLY = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt="%Y-%m", end_offset=1)

# Summary month s is decided by late months s-35 … s.
HISTORY_WINDOW = dg.TimeWindowPartitionMapping(
    start_offset=-(HISTORY_LENGTH - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)
