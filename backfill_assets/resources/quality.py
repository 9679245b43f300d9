"""How strict the data-quality checks are: the clock tolerance and how many rejected records a run accepts."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import dagster as dg
from pydantic import Field

from backfill_assets.contracts.models import Bounds
from backfill_assets.contracts.validation import Problem, Report
from backfill_assets.partitions import FIRST_MONTH, MONTHLY


class DataQuality(dg.ConfigurableResource):
    """Settings of the asset checks that stop bad data before it reaches the summary."""

    future_tolerance_minutes: int = Field(
        default=60,
        ge=0,
        description="A record whose base_ts is later than now plus this many minutes is rejected (clock skew).",
    )
    max_rejected_records: int = Field(
        default=1000,
        ge=0,
        description=(
            "A run that would reject more records than this fails before writing anything: so many bad records"
            " point at a broken load rather than at a lender's mistakes."
        ),
    )
    max_rejected_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Likewise for the share of the run's new records rejected (0.01 = 1 %).",
    )
    max_load_wait_hours: float = Field(
        default=24,
        ge=0,
        description=(
            "The load_freshness check warns when a load of accounts_all has waited unapplied longer than this"
            " many hours since its snapshot was committed."
        ),
    )

    def bounds(self) -> Bounds:
        """The row-rule bounds for a check run now: latest acceptable base_ts and the partition range."""
        now = dt.datetime.now(dt.UTC)  # aware: Spark takes it as an instant, whatever the process's time zone
        return Bounds(
            latest_allowed_base_ts=now + dt.timedelta(minutes=self.future_tolerance_minutes),
            first_month=FIRST_MONTH,
            last_month=MONTHLY.get_last_partition_key(),
        )

    def judge_rejects(self, source: Report) -> Report:
        """The source check's report with its rejects as WARN: the run goes on without those records.

        Above a limit they stay ERROR, headed by the limit they break, and the run stops before
        writing anything, as a corrupt load should.
        """
        count = sum(source.rejected.values())
        if count <= self.max_rejected_records and count <= self.max_rejected_share * source.rows_read:
            return replace(source, problems=[replace(p, severity="WARN") if p.reject else p for p in source.problems])
        columns = ", ".join(dict.fromkeys(p.column for p in source.problems if p.reject))
        limit = (
            f"{count} of {source.rows_read} new records break a rule of docs/spec.md §7, more than the limits allow"
            f" (max_rejected_records {self.max_rejected_records}, max_rejected_share {self.max_rejected_share:g})"
        )
        return replace(source, problems=[Problem(source.table, columns, limit), *source.problems])
