"""How strict the data-quality checks are: clock tolerance and how deep pandera looks."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import dagster as dg
from pydantic import Field

from backfill_assets.partitions import FIRST_MONTH, MONTHLY
from backfill_assets.schemas import Bounds


class DataQuality(dg.ConfigurableResource):
    """Settings of the asset checks that stop bad data before it reaches the summary."""

    future_tolerance_minutes: int = Field(
        default=60,
        ge=0,
        description="A record whose base_ts is later than now plus this many minutes is refused (clock skew).",
    )
    pandera_depth: Literal["SCHEMA_ONLY", "DATA_ONLY", "SCHEMA_AND_DATA"] = Field(
        default="SCHEMA_ONLY",
        description=(
            "What pandera itself validates. SCHEMA_ONLY checks columns and types from the schema alone (no Spark job);"
            " the row rules are counted in one pass regardless. SCHEMA_AND_DATA adds pandera's own data checks"
            " (one Spark job per check)."
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
