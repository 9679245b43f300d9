"""Which partitions a run must cover, from the months that hold pending records.

Used by the assets (to refuse a selection that would miss records), by `backfill-assets run` and by
the sensor (to request the range). Free of Spark and Dagster: months in, months out.
"""

from __future__ import annotations

import re

from backfill_assets.contracts.tables import MONTH_PATTERN
from backfill_assets.partitions import FIRST_MONTH
from backfill_assets.transforms.months import add_months


def partition_months(pending: list[str], last_key: str) -> list[str]:
    """The pending months that are partitions (a record of any other month is rejected)."""
    return [m for m in pending if re.match(MONTH_PATTERN, m) and FIRST_MONTH <= m <= last_key]


def required_range(pending: list[str], last_key: str, reach: int) -> tuple[str, str] | None:
    """The partitions a run must cover to apply every pending month and the `reach` (N − 1) months each reaches.

    Pending months that are no partition (malformed, out of range) still get a run, over the last
    month, so that their records are rejected and reported.
    """
    months = partition_months(pending, last_key)
    if not months:
        return (last_key, last_key) if pending else None
    return months[0], min(add_months(months[-1], reach), last_key)


def selection_problem(pending: list[str], keys: list[str], last_key: str, reach: int) -> str | None:
    """Why the selected partitions `keys` cannot apply the pending months, or None when they can."""
    needed = required_range(pending, last_key, reach)
    if needed is None:
        return None
    outside = [m for m in partition_months(pending, last_key) if m not in keys]
    if not outside and keys[-1] >= needed[1]:
        return None
    return (
        f"accounts_all has unapplied records in month(s) {', '.join(pending[:6])}"
        f"{' …' if len(pending) > 6 else ''}; a run must cover partitions {needed[0]}...{needed[1]}"
        f" (selected {keys[0]}...{keys[-1]}). Select that range or use `backfill-assets run`."
    )
