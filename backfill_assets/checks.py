"""Asset checks from validation reports: the specs the graph declares and results a person can act on.

The checks run inside the assets that read or write the data, before anything is committed: a
failing ERROR check is reported and then stops the run (`gate`), so downstream steps never
run and `summary`/`latest_summary` keep their snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import dagster as dg

from backfill_assets.contracts.validation import Problem, Report


def spec(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=True)


def _examples(p: Problem) -> str:
    keys = p.examples or ((p.example,) if p.example else ())
    return ", ".join(f"({a}, {m})" for a, m in keys)


def md_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> dg.MetadataValue:
    """A markdown table, as the UI shows metadata."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def _problems_table(problems: list[Problem]) -> dg.MetadataValue:
    rows = [
        (
            p.severity,
            p.table,
            p.column,
            p.rule,
            p.rows if p.rows is not None else "-",
            len(p.by_month) or "-",
            _examples(p),
        )
        for p in problems
    ]
    return md_table(["severity", "table", "column", "rule", "rows", "months", "example keys"], rows)


def _by_month_table(problems: list[Problem]) -> dg.MetadataValue:
    rows = [(p.table, p.column, p.rule, m, n) for p in problems for m, n in p.by_month]
    return md_table(["table", "column", "rule", "month", "rows"], rows)


def result(
    check_name: str, asset: str, reports: Iterable[Report], extra: Mapping[str, dg.RawMetadataValue] | None = None
) -> dg.AssetCheckResult:
    """One check's outcome: failed with severity ERROR (stops the run) or WARN (to look at), or passed.

    `extra`: metadata of the check's own beside the counts every check reports.
    """
    reports = list(reports)
    problems = [p for r in reports for p in r.problems]
    errors = [p for p in problems if p.severity == "ERROR"]
    metadata: dict[str, dg.RawMetadataValue] = {
        "rows_read": sum(r.rows_read for r in reports),
        "tables": ", ".join(sorted({r.table for r in reports})),
        "failing_rows": sum(p.rows or 0 for p in problems),
        "errors": len(errors),
        "warnings": len(problems) - len(errors),
        **(extra or {}),
    }
    if problems:
        metadata["problems"] = _problems_table(problems)
        metadata["failing_rows_by_month"] = _by_month_table(problems)
    pandera = {r.table: r.pandera_errors for r in reports if r.pandera_errors}
    if pandera:
        metadata["pandera_errors"] = dg.MetadataValue.json(pandera)
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR if errors or not problems else dg.AssetCheckSeverity.WARN,
        description="; ".join(p.message for p in (errors or problems)[:3]) or "every rule holds",
        metadata=metadata,
    )


def gate(*results: dg.AssetCheckResult) -> Iterator[dg.AssetCheckResult]:
    """Report checks at once, then fail the step (before any write) if one failed with ERROR, naming the problems."""
    yield from results
    failed = [r for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]
    if failed:
        raise dg.Failure(
            description="; ".join(f"{r.check_name}: {r.description}" for r in failed),
            metadata={"failed_checks": ", ".join(str(r.check_name) for r in failed)},
        )
