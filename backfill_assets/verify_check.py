"""`summary_verified`: the audit of `backfill-assets verify` (docs/spec.md §6) as an on-demand asset check.

It scans the whole of summary and latest_summary, so it runs on demand only: from the asset's Checks
tab ("Execute"), alone in its run. It is not in `backfill_job` (see `jobs.py`), and in a run that also
materialises assets (the UI adds every check of the assets it launches, "Materialize all" included)
it yields no result, so Dagster shows it skipped instead of scanning the table after each backfill.
It warns (WARN) without stopping anything.
"""

# No `from __future__ import annotations`: Dagster checks the resource annotation at definition time.

from collections.abc import Iterator
from dataclasses import replace

import dagster as dg

from backfill_assets.checks import result
from backfill_assets.contracts.validation import Report
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.transforms.verify import verify

VERIFY_CHECK = "summary_verified"
ASSET = "summary_backfilled"
VERIFY_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey(ASSET), VERIFY_CHECK)


def _materialises_assets(context: dg.AssetCheckExecutionContext) -> bool:
    return bool(context.run.asset_selection)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            VERIFY_CHECK,
            asset=ASSET,
            blocking=False,
            description=(
                "On demand (Execute on this tab; skipped in runs that materialise assets): the whole of summary"
                " and latest_summary against the invariant (docs/spec.md §4, §6), as `backfill-assets verify`"
                " does: histories agree with the earlier rows, N elements, grid, rating, no sentinels, one row"
                " per key, latest_summary as §2.3 picks it."
            ),
        )
    ],
    can_subset=True,  # lets a run that materialises assets end without this check's result (skipped)
)
def summary_verified(context: dg.AssetCheckExecutionContext, lakehouse: Lakehouse) -> Iterator[dg.AssetCheckResult]:
    if _materialises_assets(context):
        context.log.info(f"{VERIFY_CHECK} runs on demand only (Execute it alone, or `backfill-assets verify`)")
        return
    session, names = (
        lakehouse.spark.session,
        [lakehouse.name(t) for t in (lakehouse.summary_table, lakehouse.latest_table)],
    )
    if not all(session.catalog.tableExists(n) for n in names):
        yield result(VERIFY_CHECK, ASSET, [], {"note": "no summary tables yet: nothing to verify"})
        return
    reports = verify(session.table(names[0]), session.table(names[1]), lakehouse.layout)
    warned = [Report(r.table, r.rows_read, [replace(p, severity="WARN") for p in r.problems]) for r in reports]
    yield result(VERIFY_CHECK, ASSET, warned)
