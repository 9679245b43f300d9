"""`maintain`: compaction, expiry of snapshots outside the rollback window and orphan-file removal, printed
as text or, with `--json`, as one JSON document (docs/spec.md §6)."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable
from typing import Any

from backfill_assets.cli.context import Context
from backfill_assets.cli.errors import EXIT_REFUSED, CliError, first_line
from backfill_assets.operations.diff import plain
from backfill_assets.resources.maintenance import LockHeld, TableUpkeep, Upkeep, maintain


def upkeep_json(upkeep: Upkeep) -> dict[str, Any]:
    return {
        "keep_days": upkeep.keep_days,
        "expired_before": plain(upkeep.expire_before),
        "orphans_before": plain(upkeep.orphans_before),
        "window_runs": upkeep.window_runs,
        "tables": [
            {
                "table": t.table,
                "compaction": t.compaction,
                "snapshots_expired": t.expired,
                "snapshots_kept": t.kept,
                "files_deleted": t.files_deleted,
                "orphan_files_removed": t.orphans,
            }
            for t in upkeep.tables
        ],
    }


def cmd_maintain(ctx: Context, keep_days: int, as_json: bool) -> None:
    """Maintain the tables under the run lock; refused (exit status 2, nothing changed) while a run holds it."""
    try:
        upkeep = maintain(ctx.lakehouse, f"maintain-{uuid.uuid4()}", keep_days)
    except LockHeld as e:
        raise CliError(f"maintain refused: {e}", EXIT_REFUSED) from e
    except Exception as e:
        raise CliError(f"maintain failed: {type(e).__name__}: {first_line(e)}") from e
    if as_json:
        print(json.dumps(upkeep_json(upkeep)))
        return
    for t in upkeep.tables:
        print(f"{ctx.spark.table(t.table)}: {_line(t)}")
    print(
        f"kept the snapshots since {plain(upkeep.expire_before)} ({upkeep.keep_days} days), those the"
        f" {len(upkeep.window_runs)} runs since then started from or committed, and every tagged one;"
        f" removed orphan files older than {plain(upkeep.orphans_before)}"
    )


def _line(t: TableUpkeep) -> str:
    c = t.compaction
    compacted = (
        f"compacted {c.get('rewritten_data_files_count', 0)} data files into {c.get('added_data_files_count', 0)}"
        f" ({c.get('removed_delete_files_count', 0)} delete files removed); "
        if c
        else ""
    )
    return (
        f"{compacted}expired {len(t.expired)} snapshots ({t.files_deleted} files deleted), kept {len(t.kept)};"
        f" removed {len(t.orphans)} orphan files"
    )


# the commands of this module by name, each called with the parsed arguments (`cli.main`)
COMMANDS: dict[str, Callable[[Context, argparse.Namespace], None]] = {
    "maintain": lambda ctx, a: cmd_maintain(ctx, a.keep_days, a.json),
}
