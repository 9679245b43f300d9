"""`runs`, `explain`, `diff` and `unlock`: the run log, a row's origin, a run's changes, closing a dead run.

The answers come from `backfill_assets.operations` (and `runlog.unlock`) as plain data; here they
are printed as text or, with `--json`, as one JSON document (docs/spec.md §6).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TypeVar

from backfill_assets.cli.context import Context
from backfill_assets.cli.errors import EXIT_REFUSED, CliError
from backfill_assets.contracts.tables import CASES
from backfill_assets.operations import Refused
from backfill_assets.operations.diff import RowChange, column_changes, plain, run_changes
from backfill_assets.operations.explain import Explanation, explain
from backfill_assets.operations.runs import RunSummary, run_log
from backfill_assets.resources.runlog import RunNotClosable, unlock

T = TypeVar("T")


def _answer(question: Callable[[], T]) -> T:
    """The operation's answer; its refusal as one line with exit status 2."""
    try:
        return question()
    except (Refused, RunNotClosable) as e:
        raise CliError(str(e), EXIT_REFUSED) from e


def run_json(run: RunSummary) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "started_at": plain(run.started_at),
        "ended_at": plain(run.ended_at),
        "outcome": run.outcome,
        "records_by_case": run.records_by_case,
        "rejected": run.rejected,
        "summary_rows_written": run.summary_rows_written,
        "summary_snapshot_id": run.after[0],
        "latest_snapshot_id": run.after[1],
        "error": run.error,
    }


def cmd_runs(ctx: Context, limit: int | None, as_json: bool) -> None:
    """The run log, newest first; read-only."""
    runs = run_log(ctx.lakehouse, limit)
    if as_json:
        print(json.dumps([run_json(r) for r in runs]))
        return
    for run in runs:
        cases = " ".join(f"{c} {run.records_by_case[c]}" for c in CASES) if run.records_by_case else "-"
        line = (
            f"{run.run_id}  {plain(run.started_at) or '-'} → {plain(run.ended_at) or '-'}  {run.outcome}"
            f"  records {cases}  rejected {_or_dash(run.rejected)}  summary rows {_or_dash(run.summary_rows_written)}"
            f"  snapshots summary {_or_dash(run.after[0])} latest_summary {_or_dash(run.after[1])}"
        )
        print(line + (f"  error: {run.error}" if run.error else ""))
    print(f"{len(runs)} run{'' if len(runs) == 1 else 's'} in {ctx.lakehouse.name(ctx.lakehouse.runs_table)}")


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def explanation_json(e: Explanation) -> dict[str, Any]:
    return {
        "cons_acct_key": e.cons_acct_key,
        "rpt_as_of_mo": e.rpt_as_of_mo,
        "last_run_id": e.last_run_id,
        "positions": [
            {
                "i": p.i,
                "month": p.month,
                "values": {h: plain(v) for h, v in p.values.items()},
                "source": None if p.source is None else {k: plain(v) for k, v in p.source.items()},
            }
            for p in e.positions
        ],
    }


def cmd_explain(ctx: Context, account: int, month: str | None, as_json: bool) -> None:
    """Row `(account, month)` position by position: values and the winning record of each month; read-only."""
    e = _answer(lambda: explain(ctx.lakehouse, account, month))
    if as_json:
        print(json.dumps(explanation_json(e)))
        return
    print(
        f"summary row ({e.cons_acct_key}, {e.rpt_as_of_mo}): soft_del_cd {e.row['soft_del_cd']!r},"
        f" base_ts {plain(e.row['base_ts'])}; last written by run {e.last_run_id or 'unknown'}"
    )
    header = ["i", "month", *e.histories, "source"]
    table = [
        [
            str(p.i),
            p.month,
            *(_or_dash(p.values[h]) for h in e.histories),
            "no row" if p.source is None else " ".join(f"{k}={_or_dash(plain(v))}" for k, v in p.source.items()),
        ]
        for p in e.positions
    ]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for r in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def change_json(c: RowChange) -> dict[str, Any]:
    return {
        "table": c.table,
        "cons_acct_key": c.cons_acct_key,
        "rpt_as_of_mo": c.rpt_as_of_mo,
        "change": c.change,
        "columns": {k: [plain(old), plain(new)] for k, (old, new) in c.columns.items()},
    }


def cmd_diff(ctx: Context, run: str, as_json: bool) -> None:
    """The rows run `run` changed, one line each, with old → new per changed column (arrays by position)."""
    changes = _answer(lambda: run_changes(ctx.lakehouse, run))
    if as_json:
        print(json.dumps([change_json(c) for c in changes]))
        return
    for c in changes:
        print(f"{c.table} ({c.cons_acct_key}, {c.rpt_as_of_mo}) {c.change}: {'; '.join(column_changes(c))}")
    counts = {t: sum(1 for c in changes if c.table == t) for t in ("summary", "latest_summary")}
    print(f"run {run} changed {counts['summary']} summary rows and {counts['latest_summary']} latest_summary rows")


def cmd_unlock(ctx: Context, run: str) -> None:
    """Close a run left open by a process that is gone: SUCCEEDED if it had begun to publish (then completed)
    or had committed, else ROLLED_BACK."""
    outcome = _answer(lambda: unlock(ctx.lakehouse, run))
    what = "its commit was complete" if outcome == "SUCCEEDED" else "its unpublished writes dropped"
    print(f"run {run}: {outcome} ({what})")


# the commands of this module by name, each called with the parsed arguments (`cli.main`)
COMMANDS: dict[str, Callable[[Context, argparse.Namespace], None]] = {
    "runs": lambda ctx, a: cmd_runs(ctx, a.limit, a.json),
    "explain": lambda ctx, a: cmd_explain(ctx, a.account, a.month, a.json),
    "diff": lambda ctx, a: cmd_diff(ctx, a.run, a.json),
    "unlock": lambda ctx, a: cmd_unlock(ctx, a.run),
}
