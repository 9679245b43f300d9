"""The command line's arguments: commands, their flags, and usage errors as one `backfill-assets:` line."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

from backfill_assets.cli.context import TABLES
from backfill_assets.cli.errors import EXIT_REFUSED, PROG, CliError
from backfill_assets.contracts.tables import MONTH_PATTERN


class _Parser(argparse.ArgumentParser):
    """Usage errors as one `backfill-assets:` line too (argparse would print usage and its own prefix)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {PROG} --help)", EXIT_REFUSED)


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

    mnt = sub.add_parser(
        "maintain",
        help="Under the run lock: compact, expire snapshots outside the rollback window, remove orphan files.",
    )
    mnt.add_argument(
        "--keep-days",
        type=_positive,
        default=7,
        metavar="N",
        help="keep the snapshots of the last N days and every one their runs started from or committed (default 7)",
    )
    mnt.add_argument("--json", action="store_true", help="print one JSON document (what was done per table), for tools")

    rej = sub.add_parser("rejects", help="List the records runs rejected (docs/spec.md §7) with their rule and run.")
    rej.add_argument("--run", metavar="RUN", help="only the records this run rejected")
    rej.add_argument("--json", action="store_true", help="print one JSON document (a list of rejects), for tools")

    ver = sub.add_parser(
        "verify", help="Audit summary and latest_summary against the invariant (docs/spec.md §6); read-only."
    )
    ver.add_argument("--table", choices=("summary", "latest_summary"), help="only this table (default: both)")
    ver.add_argument("--json", action="store_true", help="print one JSON document (rows checked, broken rules)")

    runs = sub.add_parser("runs", help="Show the run log, newest run first: outcome, counts, snapshots, errors.")
    runs.add_argument("--limit", type=_positive, metavar="N", help="only the N newest runs")
    runs.add_argument("--json", action="store_true", help="print one JSON document (a list of runs), for tools")

    why = sub.add_parser("explain", help="Show where each history position of one summary row comes from.")
    why.add_argument("account", metavar="ACCOUNT", type=int, help="cons_acct_key")
    why.add_argument("month", metavar="MONTH", type=_month, nargs="?", help="YYYY-MM (default: its latest_summary row)")
    why.add_argument("--json", action="store_true", help="print one JSON document, for tools")

    dif = sub.add_parser("diff", help="List the rows one run changed in summary and latest_summary, old -> new.")
    dif.add_argument("run", metavar="RUN", help="run id (see backfill-assets runs)")
    dif.add_argument("--json", action="store_true", help="print one JSON document (a list of changed rows), for tools")

    unl = sub.add_parser("unlock", help="Close a run left open by a process that is gone (e.g. on another host).")
    unl.add_argument("run", metavar="RUN", help="run id of the open run")

    gen = sub.add_parser("generate", help="Write a synthetic data set (replaces the three tables).")
    gen.add_argument("--accounts", type=_positive, default=2000, help="number of accounts (default 2000)")
    gen.add_argument("--months", type=_positive, default=36, help="months of history (default 36)")
    gen.add_argument("--end-month", type=_month, help="last month YYYY-MM (default: last fully delivered)")
    gen.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    return p
