"""What one run applies: the stored watermark, or an operator's override or full refresh of months."""

from __future__ import annotations

import datetime as dt
import re

import dagster as dg
from pydantic import Field, field_validator, model_validator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.tables import MONTH_PATTERN
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.transforms.months import month_range


class BackfillOptions(dg.ConfigurableResource):
    """Per-run choices, set in the launchpad (resources → options) or by `backfill-assets run` flags.

    Left at their defaults, a run applies exactly the records delivered after the last successful
    run (docs/spec.md §4.5); the fields below widen or move that set for one run only.
    """

    watermark_override: str | None = Field(
        default=None,
        description=(
            "ISO-8601 timestamp (UTC unless it names a zone): this run applies the records with base_ts later"
            " than it instead of those later than the stored watermark, e.g. to re-apply a day's loads."
        ),
    )
    refresh_from: str | None = Field(
        default=None,
        description="Full refresh: first month (YYYY-MM) whose records are all re-applied, applied before or not.",
    )
    refresh_to: str | None = Field(
        default=None, description="Full refresh: last month (YYYY-MM) re-applied; default refresh_from."
    )

    @field_validator("watermark_override")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"watermark_override must be an ISO-8601 timestamp, not {value!r}") from None
        return value

    @field_validator("refresh_from", "refresh_to")
    @classmethod
    def _month(cls, value: str | None) -> str | None:
        if value is not None and not re.match(MONTH_PATTERN, value):
            raise ValueError(f"must be a month YYYY-MM, not {value!r}")
        return value

    @model_validator(mode="after")
    def _refresh_range(self) -> BackfillOptions:
        if self.refresh_to is not None and self.refresh_from is None:
            raise ValueError("refresh_to needs refresh_from")
        if self.refresh_from and self.refresh_to and self.refresh_to < self.refresh_from:
            raise ValueError(f"refresh_to {self.refresh_to} is before refresh_from {self.refresh_from}")
        return self

    def refreshed_months(self) -> list[str]:
        if self.refresh_from is None:
            return []
        return month_range(self.refresh_from, self.refresh_to or self.refresh_from)

    def watermark(self, lakehouse: Lakehouse) -> dt.datetime | None:
        """Records with base_ts later than this are this run's: the override if set (aware: Spark reads it as UTC)."""
        if self.watermark_override is None:
            return lakehouse.watermark()
        ts = dt.datetime.fromisoformat(self.watermark_override)
        return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)

    def _is_unapplied(self, watermark: dt.datetime | None) -> Column:
        condition = F.lit(True) if watermark is None else F.col("base_ts") > F.lit(watermark)
        refreshed = self.refreshed_months()
        return condition | F.col("rpt_as_of_mo").isin(*refreshed) if refreshed else condition

    def unapplied(
        self, records: DataFrame, watermark: dt.datetime | None, *, with_null_base_ts: bool = False
    ) -> DataFrame:
        """The records this run applies. With NULL base_ts too for the source check: never applicable, so refused."""
        condition = self._is_unapplied(watermark)
        if with_null_base_ts:
            condition = condition | F.col("base_ts").isNull()
        return records.where(condition)

    def pending_months(self, lakehouse: Lakehouse, watermark: dt.datetime | None) -> list[str]:
        """Months holding this run's records: newer than the watermark (file metadata) or refreshed."""
        return sorted(set(lakehouse.pending_months(watermark)) | set(self.refreshed_months()))
