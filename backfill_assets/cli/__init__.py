"""`backfill-assets`: the commands of docs/spec.md §6 (import, export, run, generate, verify, runs, …).

Every expected failure (a file that does not fit, a missing file or table, a failed run, an error
of Spark or Iceberg) ends as one line `backfill-assets: <reason>` on stderr and a non-zero exit
status, never as a traceback: the command is meant for schedulers and shell scripts. `--debug`
re-raises instead, for developers.

`parser`: the arguments; `errors`: `CliError` and the one line of a failure; `context`: the
resources a command works with; the commands in `tables` (import, export), `runs` (run, compact,
rejects), `audit` (verify), `ops` (runs, explain, diff, unlock), `upkeep` (maintain) and `synthetic`
(generate).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException

from backfill_assets.cli.audit import cmd_verify
from backfill_assets.cli.context import Context
from backfill_assets.cli.errors import EXIT_FAILURE, EXIT_REFUSED, PROG, CliError, spark_failure
from backfill_assets.cli.ops import COMMANDS as OPS
from backfill_assets.cli.parser import parser
from backfill_assets.cli.runs import cmd_compact, cmd_rejects, cmd_run, run_options
from backfill_assets.cli.synthetic import cmd_generate, delivered_month
from backfill_assets.cli.tables import cmd_export, cmd_import
from backfill_assets.cli.upkeep import COMMANDS as UPKEEP
from backfill_assets.contracts.conform import ValidationError
from backfill_assets.resources.spark import SparkIceberg

__all__ = ["EXIT_FAILURE", "EXIT_REFUSED", "PROG", "CliError", "delivered_month", "main", "parser", "run_options"]


def main(
    argv: Sequence[str] | None = None, *, spark: SparkIceberg | None = None, layout_file: str | None = None
) -> int:
    """Entry point of the console script; `spark` and `layout_file` replace the configured ones (tests)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    command = "command"
    try:
        args = parser().parse_args(argv)
        command = args.command
        options = run_options(args.watermark, args.refresh) if args.command == "run" else None  # before Spark starts
        ctx = Context(spark, args.namespace, layout_file)
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
        elif args.command == "verify" and not cmd_verify(ctx, args.table, args.json):
            return EXIT_FAILURE  # a broken rule is a finding, not an error: the report is on stdout
        elif args.command in OPS:
            OPS[args.command](ctx, args)
        elif args.command in UPKEEP:
            UPKEEP[args.command](ctx, args)
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
        print(f"{PROG}: {spark_failure(command, e)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0
