"""`backfill-assets run`: find what is unapplied and materialise exactly the partitions it reaches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from backfill_assets.contracts.tables import CASES
from backfill_assets.jobs import BACKFILL_JOB, range_tags
from backfill_assets.partitions import MONTHLY
from backfill_assets.planning import required_range
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.options import BackfillOptions


@dataclass
class RunReport:
    """What one run did, per asset, from its materialization metadata."""

    partitions: tuple[str, str] | None
    run_id: str | None = None
    success: bool = True
    error: str = ""
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, dg.AssetCheckEvaluation] = field(default_factory=dict)

    def lines(self) -> list[str]:
        if self.partitions is None:
            return ["nothing to apply: accounts_all has no unapplied records"]
        if not self.success:
            return [
                f"run {self.run_id} FAILED over partitions {self.partitions[0]}...{self.partitions[1]}: {self.error}"
            ]
        out = [f"run {self.run_id}: partitions {self.partitions[0]}...{self.partitions[1]}"]
        read, applied = self.metadata.get("classified_accounts", {}), self.metadata.get("joined_windows", {})
        for c in CASES:
            n, done = read.get(f"case_{c}", 0), applied.get(f"case_{c}", 0)
            out.append(f"case {c:<3} records read {n:>8}  applied {done:>8}  skipped {n - done:>8}")
        rejected = read.get("rejected_records", 0)
        if rejected:
            rules = ", ".join(f"{rule} {n}" for rule, n in sorted(read.get("rejected_by_rule", {}).items()))
            out.append(
                f"rejected records: {rejected} ({rules}), kept in {read.get('rejects_table')}"
                f" (backfill-assets rejects --run {self.run_id})"
            )
        else:
            out.append("rejected records: 0")
        summary = self.metadata.get("summary_backfilled", {})
        out.append(
            f"summary rows written: {summary.get('summary_rows_written', 0)} in {summary.get('months_touched', 0)}"
            f" months; latest_summary snapshot {summary.get('latest_snapshot_id', '-')}"
        )
        warned = [f"{name}: {e.description}" for name, e in self.checks.items() if not e.passed]
        out.append(f"checks: {len(self.checks) - len(warned)} passed, {len(warned)} warned")
        out += [f"  WARN {w}" for w in warned]
        return out


def run_pending(
    defs: dg.Definitions, instance: dg.DagsterInstance, options: BackfillOptions | None = None
) -> RunReport:
    """Materialise the backfill job over the partitions that this run's records reach.

    `options` replaces the configured `BackfillOptions` for this run (watermark override, full refresh).
    """
    resources = defs.resources or {}
    lakehouse, options = resources["lakehouse"], options or resources["options"]
    assert isinstance(lakehouse, Lakehouse) and isinstance(options, BackfillOptions)
    lakehouse.ensure_tables()
    last = MONTHLY.get_last_partition_key()
    assert last is not None
    pending = options.pending_months(lakehouse, options.watermark(lakehouse))
    needed = required_range(pending, last, lakehouse.layout.reach)
    if needed is None:
        return RunReport(None)
    job = defs.resolve_job_def(BACKFILL_JOB)
    result = job.execute_in_process(
        instance=instance,
        tags=range_tags(*needed),
        raise_on_error=False,
        run_config={
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
            "resources": {"options": {"config": options.model_dump(exclude_defaults=True)}},
        },
    )
    report = RunReport(needed, result.run_id, result.success)
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        step_error = failures[0].step_failure_data.error if failures else None
        report.error = step_error.message.strip().splitlines()[0] if step_error else "see the run's logs"
    for evaluation in result.get_asset_check_evaluations():
        report.checks[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = evaluation
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        report.metadata.setdefault(mat.asset_key.to_user_string(), {}).update(
            {k: v.value for k, v in mat.metadata.items()}
        )
    return report
