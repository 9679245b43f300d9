"""Fault injection for the reliability tests: stop a real run at a named point so a test can kill it."""

from __future__ import annotations

import os
import sys
import time

POINTS = ("reading", "summary_merge", "auditing", "between_tables")


def fault_point(name: str) -> None:
    """With `BACKFILL_FAULT_POINT=name[:seconds]`, say so on stderr and wait (default 600 s) before going on.

    Unset (always, outside tests), this does nothing.
    """
    wanted, _, seconds = os.environ.get("BACKFILL_FAULT_POINT", "").partition(":")
    if wanted != name:
        return
    print(f"backfill-assets: fault point {name} reached (pid {os.getpid()})", file=sys.stderr, flush=True)
    time.sleep(float(seconds or 600))
