"""Monthly partitions keyed `YYYY-MM`."""

from __future__ import annotations

import os

import dagster as dg

# The first month a record may have; set before the definitions load (it shapes the UI's partitions).
FIRST_MONTH = os.environ.get("BACKFILL_FIRST_MONTH", "2015-01")

# end_offset=1: the current month is a partition too, so this month's loads are never refused.
MONTHLY = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt="%Y-%m", end_offset=1)
