"""Case II: months after an account's latest are built from `latest_summary` alone."""

from __future__ import annotations

from pyspark.sql import SparkSession

from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import RunReport
from backfill_assets_tests.fixtures import Lake, record

HISTORY = [f"2025-{m:02d}" for m in range(1, 7)]


def _window_rows_read(report: RunReport) -> int:
    return int(report.checks["summary_backfilled:summary_window_valid"].metadata["rows_read"].value)


def test_forward_months_read_no_summary_history(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    lake = Lake(spark, spark_resource)
    lake.deliver(record(a, m, acct_bal_am=a * 100 + i) for a in (1, 2, 3) for i, m in enumerate(HISTORY))
    lake.run()
    lake.deliver(
        [
            record(1, "2025-07", acct_bal_am=7),  # the next month
            record(2, "2025-09", acct_bal_am=9),  # after a gap of two months
            record(2, "2025-10", acct_bal_am=10),  # chained on the one before, in the same batch
            record(3, "2025-08", soft_del_cd="1"),  # a delete of a month that has no row: ignored
            record(4, "2025-07"),  # a new account (Case I)
        ]
    )
    report = lake.run()
    assert report.metadata["classified_accounts"]["case_II"] == 4
    assert report.metadata["classified_accounts"]["case_I"] == 1
    assert _window_rows_read(report) == 0  # nothing of summary's history was read
    lake.assert_matches_model()
    rows = lake.rows("summary")
    assert rows[(2, "2025-10")]["balance_am_history"][:6] == [10, 9, None, None, 205, 204]


def test_delete_of_a_forward_month_remarks_its_deleted_row(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    lake = Lake(spark, spark_resource)
    lake.deliver(record(1, m) for m in HISTORY[:3])
    lake.run()
    lake.deliver([record(1, "2025-03", soft_del_cd="1")])  # Case III: latest falls back to 2025-02
    lake.run()
    lake.assert_matches_model()
    lake.deliver([record(1, "2025-03", soft_del_cd="4")])  # after the latest, yet the row exists
    report = lake.run()
    assert report.metadata["classified_accounts"]["case_II"] == 1
    assert _window_rows_read(report) == 1  # only that row
    lake.assert_matches_model()
    assert lake.rows("summary")[(1, "2025-03")]["soft_del_cd"] == "4"
    lake.deliver([record(1, "2025-03", acct_bal_am=33)])  # re-activated from the latest row
    lake.run()
    lake.assert_matches_model()
