"""`summary_verified`: the audit of `backfill-assets verify` (docs/spec.md §6) as an on-demand asset check.

It scans the whole of summary and latest_summary, so it is not part of `backfill_job` (see `jobs.py`):
the UI runs it on demand from the asset's Checks tab ("Execute"), and it warns (WARN) without
stopping anything.
"""

# No `from __future__ import annotations`: Dagster checks the resource annotation at definition time.

from dataclasses import replace

import dagster as dg

from backfill_assets.checks import result
from backfill_assets.contracts.validation import Report
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.transforms.verify import verify

VERIFY_CHECK = "summary_verified"
ASSET = "summary_backfilled"
VERIFY_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey(ASSET), VERIFY_CHECK)


@dg.asset_check(
    asset=ASSET,
    name=VERIFY_CHECK,
    blocking=False,
    description=(
        "On demand, not part of backfill_job: the whole of summary and latest_summary against the invariant"
        " (docs/spec.md §4, §6), as `backfill-assets verify` does: histories agree with the earlier rows,"
        " 36 elements, grid, rating, no sentinels, one row per key, latest_summary as §2.3 picks it."
    ),
)
def summary_verified(lakehouse: Lakehouse) -> dg.AssetCheckResult:
    session, names = (
        lakehouse.spark.session,
        [lakehouse.name(t) for t in (lakehouse.summary_table, lakehouse.latest_table)],
    )
    if not all(session.catalog.tableExists(n) for n in names):
        return result(VERIFY_CHECK, ASSET, [], {"note": "no summary tables yet: nothing to verify"})
    reports = verify(session.table(names[0]), session.table(names[1]))
    warned = [Report(r.table, r.rows_read, [replace(p, severity="WARN") for p in r.problems]) for r in reports]
    return result(VERIFY_CHECK, ASSET, warned)
