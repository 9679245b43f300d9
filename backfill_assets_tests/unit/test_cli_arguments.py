"""The `backfill-assets` command's arguments, checked before Spark starts (no warehouse, no SparkSession)."""

from __future__ import annotations

import datetime as dt

import pytest

from backfill_assets import cli
from backfill_assets.cli import CliError, run_options


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--help"])
    out = capsys.readouterr().out
    assert code == 0 and "import" in out and "generate" in out


def test_default_end_month_has_every_delivery_in_the_past() -> None:
    assert cli.delivered_month(dt.date(2024, 1, 31)) == "2023-12"
    assert cli.delivered_month(dt.date(2024, 1, 15)) == "2023-11"
    assert cli.delivered_month(dt.date(2024, 12, 1)) == "2024-10"


@pytest.mark.parametrize(
    ("watermark", "refresh", "field"),
    [("yesterday", None, "watermark_override"), (None, "2024-1", "refresh_from"), (None, "2024-05:2024-01", "refresh")],
)
def test_run_flags_are_checked_before_spark_starts(watermark: str | None, refresh: str | None, field: str) -> None:
    with pytest.raises(CliError, match=field):
        run_options(watermark, refresh)
    assert run_options("2026-01-01T00:00:00", "2024-01:2024-03").refreshed_months() == ["2024-01", "2024-02", "2024-03"]
