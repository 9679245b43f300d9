"""A whole synthetic data set: history, the summary tables built from it, and the late batch that follows."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from backfill_assets.contracts.layout import DEFAULT_LAYOUT, Layout
from backfill_assets.contracts.tables import MONTH_PATTERN
from backfill_assets.generate.late import draw_late
from backfill_assets.generate.records import draw_accounts, draw_history, month_index
from backfill_assets.transforms.rebuild import rebuild_latest, rebuild_summary


@dataclass(frozen=True)
class GeneratedData:
    """A summarised history, the summary tables built from it, and the late batch that follows."""

    history: DataFrame
    late: DataFrame
    summary: DataFrame
    latest_summary: DataFrame


def generate(
    spark: SparkSession,
    *,
    accounts: int,
    months: int,
    end_month: str,
    seed: int,
    late_fraction: float = 0.10,
    older_months: int = 0,
    layout: Layout = DEFAULT_LAYOUT,
) -> GeneratedData:
    """A deterministic data set for `seed`: months end_month-(months-1) … end_month of `accounts` accounts.

    `older_months` adds that many months of history before them (for the accounts open since the
    first month) and changes nothing else: the same seed gives the same late batch, so a benchmark
    can show that the cost of a batch does not grow with the history behind it. The tables have
    the columns of `layout`; the default layout's source columns are drawn the same way under any layout.
    """
    if accounts < 1 or months < 1 or older_months < 0:
        raise ValueError("accounts and months must be at least 1, older_months at least 0")
    if not re.match(MONTH_PATTERN, end_month):
        raise ValueError(f"end_month must be YYYY-MM, not {end_month!r}")
    if not 0.0 <= late_fraction <= 1.0:
        raise ValueError("late_fraction must be between 0 and 1")
    end_mo = month_index(end_month)
    first_mo = end_mo - (months - 1)
    accts = draw_accounts(spark, seed, accounts, first_mo, end_mo)
    history = draw_history(seed, accts, first_mo, older_months, layout)
    return GeneratedData(
        history=history,
        late=draw_late(seed, accts, first_mo, end_mo, late_fraction, layout),
        summary=rebuild_summary(history, layout),
        latest_summary=rebuild_latest(history, layout),  # = latest_of(summary), without building every row again
    )
