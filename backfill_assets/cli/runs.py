"""`run`, `compact` and `rejects`: apply what is pending, merge the delete files runs leave, list what runs rejected."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from typing import Any

import dagster as dg
import pydantic
from pyspark.sql import functions as F

from backfill_assets.cli.context import Context
from backfill_assets.cli.errors import EXIT_REFUSED, CliError, first_line
from backfill_assets.resources.maintenance import LockHeld, compact
from backfill_assets.resources.options import BackfillOptions


def run_options(watermark: str | None, refresh: str | None) -> BackfillOptions:
    """The run's options from the flags; a wrong value is refused naming the flag's field."""
    first, _, last = (refresh or "").partition(":")
    try:
        return BackfillOptions(watermark_override=watermark, refresh_from=first or None, refresh_to=last or None)
    except pydantic.ValidationError as e:
        reasons = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'refresh'}: {err['msg']}" for err in e.errors())
        raise CliError(f"run: {reasons}", EXIT_REFUSED) from e


def cmd_run(ctx: Context, options: BackfillOptions) -> None:
    """Apply what is pending; a failed Dagster run is reported in one line (its details are in the run's logs)."""
    from backfill_assets.runner import run_pending

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    with instance:
        try:
            report = run_pending(ctx.defs, instance, options)
        except Exception as e:
            raise CliError(f"run failed: {type(e).__name__}: {first_line(e)}") from e
    if not report.success:
        raise CliError(report.lines()[0])
    for line in report.lines():
        print(line)


def cmd_compact(ctx: Context) -> None:
    """Rewrite the data files that carry deletes (under the run lock) and say what was rewritten."""
    try:
        compacted = compact(ctx.lakehouse, f"compact-{uuid.uuid4()}")
    except LockHeld as e:  # a refusal like the others: exit status 2, nothing changed
        raise CliError(f"compact refused: {e}", EXIT_REFUSED) from e
    except Exception as e:
        raise CliError(f"compact failed: {type(e).__name__}: {first_line(e)}") from e
    for table, counts in compacted.items():
        print(
            f"{ctx.spark.table(table)}: rewrote {counts.get('rewritten_data_files_count', 0)} data files into"
            f" {counts.get('added_data_files_count', 0)}, removed {counts.get('removed_delete_files_count', 0)}"
            " delete files"
        )


def _json_value(value: Any) -> Any:
    """A column value for JSON: timestamps as ISO-8601 in UTC (Spark hands them over in local time)."""
    return value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value


def cmd_rejects(ctx: Context, run: str | None, as_json: bool) -> None:
    """The rejected records, oldest first, with rule, message and run; read-only."""
    name = ctx.lakehouse.name(ctx.lakehouse.rejects_table)
    rows = []
    if ctx.exists(name):  # no table: no run has started yet
        frame = ctx.spark.session.table(name)
        if run is not None:
            frame = frame.where(F.col("run_id") == run)
        rows = frame.orderBy("rejected_at", "run_id", "rule", "cons_acct_key", "rpt_as_of_mo").collect()
    rejects = [
        {
            "run_id": r["run_id"],
            "rule": r["rule"],
            "message": r["message"],
            "record": {c: _json_value(r[c]) for c in ctx.lakehouse.layout.accounts_all.fieldNames()},
        }
        for r in rows
    ]
    if as_json:
        print(json.dumps(rejects))
        return
    for row, reject in zip(rows, rejects, strict=True):
        record = reject["record"]
        key = ", ".join(f"{c}={record[c]!r}" for c in ("cons_acct_key", "rpt_as_of_mo", "base_ts"))
        print(f"{_json_value(row['rejected_at'])}  run {row['run_id']}  {row['rule']}  {key}: {row['message']}")
    by_rule: dict[str, int] = {}
    for row in rows:
        by_rule[row["rule"]] = by_rule.get(row["rule"], 0) + 1
    rules = ", ".join(f"{rule} {n}" for rule, n in sorted(by_rule.items()))
    print(f"{len(rows)} rejected record{'' if len(rows) == 1 else 's'}{f' ({rules})' if rows else ''} in {name}")
