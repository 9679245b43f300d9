"""`verify`: audit the stored tables against the invariant (docs/spec.md §4, §6); read-only."""

from __future__ import annotations

import json
from typing import Any

from backfill_assets.cli.context import Context
from backfill_assets.cli.errors import CliError
from backfill_assets.contracts.validation import Report
from backfill_assets.transforms.verify import TABLES, verify


def audit_tables(ctx: Context, tables: tuple[str, ...]) -> list[Report]:
    """The audit of `tables` (summary, latest_summary); latest_summary is judged against summary."""
    names = {t: ctx.table_name(t) for t in ("summary", *tables)}
    for name in names.values():
        if not ctx.exists(name):
            raise CliError(f"verify: table {name} does not exist")
    session = ctx.spark.session
    latest = session.table(names["latest_summary"]) if "latest_summary" in tables else None
    return verify(session.table(names["summary"]), latest, ctx.lakehouse.layout, tables)


def cmd_verify(ctx: Context, table: str | None, as_json: bool) -> bool:
    """Print the rows checked and each broken rule with its rows and up to three example keys; True if clean."""
    reports = audit_tables(ctx, (table,) if table else TABLES)
    broken: list[dict[str, Any]] = [
        {
            "table": r.table,
            "rule": f"{p.column}: {p.rule}",
            "rows": p.rows,
            "examples": [list(k) for k in p.examples],
        }
        for r in reports
        for p in r.problems
    ]
    if as_json:
        print(json.dumps({"rows_checked": sum(r.rows_read for r in reports), "broken": broken}))
        return not broken
    for r in reports:
        rules = [b for b in broken if b["table"] == r.table]
        verdict = f"{len(rules)} rule{'' if len(rules) == 1 else 's'} broken" if rules else "every rule holds"
        print(f"{r.table}: {r.rows_read} rows checked, {verdict}")
        for b in rules:
            keys = ", ".join(f"({a}, {m})" for a, m in b["examples"])
            print(f"  {b['table']}: {b['rule']}: {b['rows']} row{'' if b['rows'] == 1 else 's'}, e.g. {keys}")
    return not broken
