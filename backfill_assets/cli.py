"""`backfill-assets`: import, export, run, compact, generate and rejects (SPEC §6).

Every expected failure (a file that does not fit, a missing file or table, a failed run, an error
of Spark or Iceberg) ends as one line `backfill-assets: <reason>` on stderr and a non-zero exit
status, never as a traceback: the command is meant for schedulers and shell scripts. `--debug`
re-raises instead, for developers.

Spark and catalog settings come from `definitions.defs.resources["spark"]` (one place to configure);
table names from its `lakehouse` resource. Tests inject their own resource via `main(spark=...)`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import uuid
from collections.abc import Sequence
from typing import Any, NoReturn

import dagster as dg
import pydantic
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException, PySparkException
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import functions as F

from backfill_assets import definitions
from backfill_assets.contracts.tables import ACCOUNTS_ALL, CONTRACTS, MONTH_PATTERN, SCHEMAS
from backfill_assets.contracts.validation import Problem, ValidationError, validate_table
from backfill_assets.generate import DELIVERY_DAYS
from backfill_assets.io_manager import latest_snapshot
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.options import BackfillOptions
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.resources.table_names import qualified_name
from backfill_assets.transforms.months import add_months

PROG = "backfill-assets"
TABLES = tuple(SCHEMAS)  # accounts_all, summary, latest_summary
EXIT_FAILURE, EXIT_REFUSED = 1, 2


class CliError(Exception):
    """An expected failure: reported as one line on stderr with exit status `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """Usage errors as one `backfill-assets:` line too (argparse would print usage and its own prefix)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {PROG} --help)", EXIT_REFUSED)


def _first_line(error: BaseException) -> str:
    """The first line of an error's message; of a Spark error, its innermost cause's (py4j's only names a call)."""
    if isinstance(error, Py4JJavaError):
        java = error.java_exception
        while java.getCause() is not None:
            java = java.getCause()
        text = str(java.toString()).strip()
    else:
        while isinstance(error, CapturedException) and error.cause is not None:
            error = error.cause
        text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _spark_failure(command: str, error: Exception) -> str:
    """One line for an error of Spark or Iceberg: its cause, the table it concerns, and what to do."""
    cause = _first_line(error)
    table = re.search(r"(\S*)/([^/\s]+)/([^/\s]+)/(?:metadata|data)/", cause)
    where = f" on table {table[2]}.{table[3]}" if table else ""
    if table and re.search(r"NotFound|No such file|does not exist", cause):
        hint = (
            "a file the table's Iceberg metadata names is missing. Iceberg keeps absolute paths, so a warehouse"
            f" that was copied or moved still points at {table[1]}: use the warehouse there (BACKFILL_WAREHOUSE),"
            " or rewrite the copy's paths with Iceberg's rewrite_table_path procedure"
        )
    else:
        hint = "see the Spark log above, or run again with --debug for the stack trace"
    return f"{command} failed{where}: {cause}; {hint}"


def _month(value: str) -> str:
    if not re.match(MONTH_PATTERN, value):
        raise argparse.ArgumentTypeError(f"not a month YYYY-MM: {value!r}")
    return value


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {value!r}")
    return number


def delivered_month(today: dt.date | None = None) -> str:
    """The default end month of `generate`: the last month whose generated deliveries (history and
    late batch, up to DELIVERY_DAYS after it ends) all lie in the past, so no base_ts is in the future."""
    day = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=DELIVERY_DAYS)
    return add_months(f"{day.year:04d}-{day.month:02d}", -1)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Keep the account summary exact when records arrive late.")
    p.add_argument("--namespace", help="Iceberg namespace of the tables (default: the configured one, edf_gold).")
    p.add_argument("--debug", action="store_true", help="Show the Python traceback of a failure.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    imp = sub.add_parser("import", help="Append (or replace) the rows of a parquet file or folder into a table.")
    imp.add_argument("table", metavar="TABLE", help=f"one of {', '.join(TABLES)}")
    imp.add_argument("parquet", metavar="PARQUET", help="parquet file or folder")
    imp.add_argument("--replace", action="store_true", help="Replace the table's rows instead of appending.")

    exp = sub.add_parser("export", help="Write a table's current rows to a parquet folder (overwritten).")
    exp.add_argument("table", metavar="TABLE", help=f"one of {', '.join(TABLES)}")
    exp.add_argument("parquet", metavar="PARQUET", help="parquet folder to write")

    run = sub.add_parser("run", help="Apply every unapplied record of accounts_all and print what was done.")
    run.add_argument(
        "--watermark",
        metavar="TIMESTAMP",
        help="apply the records with base_ts later than this ISO-8601 timestamp (UTC) instead of the stored watermark",
    )
    run.add_argument(
        "--refresh",
        metavar="FROM[:TO]",
        help="full refresh: also re-apply every record of these months (YYYY-MM), applied before or not",
    )

    sub.add_parser(
        "compact",
        help="Merge the delete files that merge-on-read runs leave into the data files of summary and latest_summary.",
    )

    rej = sub.add_parser("rejects", help="List the records runs rejected (SPEC §7) with their rule and run.")
    rej.add_argument("--run", metavar="RUN", help="only the records this run rejected")
    rej.add_argument("--json", action="store_true", help="print one JSON document (a list of rejects), for tools")

    gen = sub.add_parser("generate", help="Write a synthetic data set (replaces the three tables).")
    gen.add_argument("--accounts", type=_positive, default=2000, help="number of accounts (default 2000)")
    gen.add_argument("--months", type=_positive, default=36, help="months of history (default 36)")
    gen.add_argument("--end-month", type=_month, help="last month YYYY-MM (default: last fully delivered)")
    gen.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    return p


class _Context:
    """The Spark resource, lakehouse and Dagster definitions one command works with."""

    def __init__(self, spark: SparkIceberg | None, namespace: str | None) -> None:
        resources = definitions.defs.resources or {}
        base_spark, base_lakehouse = resources["spark"], resources["lakehouse"]
        assert isinstance(base_spark, SparkIceberg) and isinstance(base_lakehouse, Lakehouse)
        resource = spark or base_spark
        if namespace:
            resource = _with(resource, namespace=namespace)
        self.spark = resource
        if resource is base_spark:
            self.lakehouse, self.defs = base_lakehouse, definitions.defs
        else:
            self.lakehouse = Lakehouse(**{**_fields(base_lakehouse), "spark": resource})
            self.defs = definitions.build_defs(resource, self.lakehouse)

    def table_name(self, table: str) -> str:
        """Qualified name of a SPEC table, honouring table names configured on the lakehouse."""
        if table not in TABLES:
            raise CliError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}", EXIT_REFUSED)
        return qualified_name(self.lakehouse, table)

    def exists(self, name: str) -> bool:
        try:
            self.spark.session.table(name)
        except AnalysisException:
            return False
        return True


def _with(resource: SparkIceberg, **changes: Any) -> SparkIceberg:
    return SparkIceberg(**{**_fields(resource), **changes})


def _fields(resource: dg.ConfigurableResource) -> dict[str, Any]:
    return {k: getattr(resource, k) for k in type(resource).model_fields}


# ------------------------------------------------------------------------------------------ commands


def cmd_import(ctx: _Context, table: str, parquet: str, replace: bool) -> None:
    """Validate the whole file first; then create the table if needed and write it in one commit."""
    name = ctx.table_name(table)
    session = ctx.spark.session
    try:
        source = session.read.parquet(parquet)
    except AnalysisException as e:
        raise CliError(f"cannot read parquet {parquet}: {_first_line(e)}") from e
    frame = validate_table(source, table)
    exists = ctx.exists(name)
    unique = CONTRACTS[table].unique
    if exists and unique and not replace:
        existing = session.table(name).select(*unique)
        ex = frame.join(existing, list(unique), "left_semi").select("cons_acct_key", "rpt_as_of_mo").first()
        if ex is not None:
            rule = "key already in the table (appending would duplicate it; use --replace)"
            raise ValidationError([Problem(table, ", ".join(unique), rule, None, (ex[0], ex[1]))])
    ctx.lakehouse.recover()  # a dead run's restore must not land on top of the import
    if table == "summary":
        ctx.lakehouse.reset_watermark()
    session.sql(CONTRACTS[table].create_sql(name))
    writer = frame.writeTo(name)
    if replace:
        writer.overwrite(F.lit(True))
    else:
        writer.append()
    snap = latest_snapshot(ctx.spark, name) or {}
    verb = "replaced" if replace else "appended"
    print(f"{name}: {verb} {snap.get('added-records', 0)} rows (snapshot {snap.get('snapshot_id')})")


def cmd_export(ctx: _Context, table: str, parquet: str) -> None:
    """Timestamps are written as UTC-adjusted TIMESTAMP_MICROS (not Spark's legacy INT96), so other
    readers (pyarrow, DuckDB, …) get the same instants; the round trip through `import` is exact."""
    name = ctx.table_name(table)
    session = ctx.spark.session
    try:
        df = session.table(name)
    except AnalysisException as e:
        raise CliError(f"table {name} does not exist (nothing to export)") from e
    key = "spark.sql.parquet.outputTimestampType"
    previous = session.conf.get(key, None)
    session.conf.set(key, "TIMESTAMP_MICROS")
    try:
        df.write.mode("overwrite").parquet(parquet)
    finally:
        if previous is None:
            session.conf.unset(key)
        else:
            session.conf.set(key, previous)
    print(f"{name}: exported {session.read.parquet(parquet).count()} rows to {parquet}")


def run_options(watermark: str | None, refresh: str | None) -> BackfillOptions:
    """The run's options from the flags; a wrong value is refused naming the flag's field."""
    first, _, last = (refresh or "").partition(":")
    try:
        return BackfillOptions(watermark_override=watermark, refresh_from=first or None, refresh_to=last or None)
    except pydantic.ValidationError as e:
        reasons = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'refresh'}: {err['msg']}" for err in e.errors())
        raise CliError(f"run: {reasons}", EXIT_REFUSED) from e


def cmd_run(ctx: _Context, options: BackfillOptions) -> None:
    """Apply what is pending; a failed Dagster run is reported in one line (its details are in the run's logs)."""
    from backfill_assets.runner import run_pending

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    with instance:
        try:
            report = run_pending(ctx.defs, instance, options)
        except Exception as e:
            raise CliError(f"run failed: {type(e).__name__}: {_first_line(e)}") from e
    if not report.success:
        raise CliError(report.lines()[0])
    for line in report.lines():
        print(line)


def cmd_generate(ctx: _Context, accounts: int, months: int, end_month: str | None, seed: int) -> None:
    """Replace accounts_all, summary and latest_summary with a synthetic data set."""
    from backfill_assets.generate import generate, write

    end = end_month or delivered_month()
    try:
        data = generate(ctx.spark.session, accounts=accounts, months=months, end_month=end, seed=seed)
    except ValueError as e:
        raise CliError(f"generate: {e}", EXIT_REFUSED) from e
    ctx.lakehouse.recover()
    ctx.lakehouse.reset_watermark()
    write(data, ctx.lakehouse, replace=True)
    for table in TABLES:
        name = ctx.table_name(table)
        print(f"{name}: {ctx.spark.session.table(name).count()} rows")


def cmd_compact(ctx: _Context) -> None:
    """Rewrite the data files that carry deletes (under the run lock) and say what was rewritten."""
    try:
        compacted = ctx.lakehouse.compact(f"compact-{uuid.uuid4()}")
    except Exception as e:
        raise CliError(f"compact failed: {type(e).__name__}: {_first_line(e)}") from e
    for table, counts in compacted.items():
        print(
            f"{ctx.spark.table(table)}: rewrote {counts.get('rewritten_data_files_count', 0)} data files into"
            f" {counts.get('added_data_files_count', 0)}, removed {counts.get('removed_delete_files_count', 0)}"
            " delete files"
        )


def _json_value(value: Any) -> Any:
    """A column value for JSON: timestamps as ISO-8601 in UTC (Spark hands them over in local time)."""
    return value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value


def cmd_rejects(ctx: _Context, run: str | None, as_json: bool) -> None:
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
            "record": {c: _json_value(r[c]) for c in ACCOUNTS_ALL.fieldNames()},
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


def main(argv: Sequence[str] | None = None, *, spark: SparkIceberg | None = None) -> int:
    """Entry point of the console script; `spark` replaces the configured resource (tests)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    command = "command"
    try:
        args = parser().parse_args(argv)
        command = args.command
        options = run_options(args.watermark, args.refresh) if args.command == "run" else None  # before Spark starts
        ctx = _Context(spark, args.namespace)
        if args.command == "import":
            cmd_import(ctx, args.table, args.parquet, args.replace)
        elif args.command == "export":
            cmd_export(ctx, args.table, args.parquet)
        elif args.command == "run":
            assert options is not None
            cmd_run(ctx, options)
        elif args.command == "compact":
            cmd_compact(ctx)
        elif args.command == "generate":
            cmd_generate(ctx, args.accounts, args.months, args.end_month, args.seed)
        elif args.command == "rejects":
            cmd_rejects(ctx, args.run, args.json)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except (CliError, ValidationError) as e:
        if debug:
            raise
        code = e.code if isinstance(e, CliError) else EXIT_REFUSED
        print(f"{PROG}: {e}", file=sys.stderr)
        return code
    except (Py4JJavaError, PySparkException) as e:
        if debug:
            raise
        print(f"{PROG}: {_spark_failure(command, e)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
