"""What a backfill costs: the summary rows it reads and the rows its commit writes (issue #8).

Two accounts with 42 months of history; a late batch fills a gap of one and corrects a later month.
Of `summary` the run must read that account's rows from the first late month on, plus the single
older row the gap's new row takes its history from (not 35 months before, not the other account),
and its MERGE must write only the rows that change.
"""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.maintenance import compact
from backfill_assets.resources.runlog import open_runs
from backfill_assets.resources.spark import SparkIceberg, latest_snapshot
from backfill_assets.runner import RunReport
from backfill_assets_tests.fixtures import Lake, record
from backfill_assets_tests.reference_model import month_index, month_key

FIRST, LAST, GAP, CORRECTED = "2021-01", "2024-06", "2023-03", "2023-05"
HISTORY = [month_key(i) for i in range(month_index(FIRST), month_index(LAST) + 1)]
LATER = HISTORY[HISTORY.index(GAP) + 1 :]  # the rows of account 1 after the gap: 2023-04 … 2024-06


def _late_run(lake: Lake) -> RunReport:
    lake.deliver(
        record(a, m, acct_bal_am=month_index(m) - month_index(FIRST))
        for a in (1, 2)
        for m in HISTORY
        if (a, m) != (1, GAP)
    )
    lake.run()
    lake.deliver([record(1, GAP, acct_bal_am=-7), record(1, CORRECTED, acct_bal_am=None)])
    return lake.run()


def _check(report: RunReport, name: str) -> Any:
    return report.checks[f"summary_backfilled:{name}"].metadata


@pytest.fixture(scope="module")
def merge_on_read(spark: SparkSession, spark_resource: SparkIceberg) -> tuple[Lake, RunReport]:
    lake = Lake(spark, spark_resource)
    return lake, _late_run(lake)


def test_reads_only_the_rows_from_the_first_late_month_and_the_base_row(merge_on_read: tuple[Lake, RunReport]) -> None:
    lake, report = merge_on_read
    lake.assert_matches_model()
    # 15 rows of account 1 from the gap on (2023-04 … 2024-06) and its 2023-02 row, nothing of account 2
    assert _check(report, "summary_window_valid")["rows_read"].value == len(LATER) + 1
    gap_row = lake.rows("summary")[(1, GAP)]
    assert gap_row["balance_am_history"][:4] == [-7, 25, 24, 23]  # the base row's history, shifted by one


def test_merge_on_read_writes_only_the_changed_rows(merge_on_read: tuple[Lake, RunReport]) -> None:
    lake, report = merge_on_read
    summary = latest_snapshot(lake.resource, lake.table("summary"))
    assert summary is not None
    written = report.metadata["summary_backfilled"]["summary_rows_written"]
    assert written == len(LATER) + 1 == int(summary["added-records"])  # the new gap row and every later row
    assert int(summary["added-position-deletes"]) == len(LATER)  # the old versions of the rows replaced
    assert int(summary.get("deleted-data-files", 0)) == 0  # no data file rewritten
    properties = {r["key"]: r["value"] for r in lake.spark.sql(f"SHOW TBLPROPERTIES {lake.table('summary')}").collect()}
    assert properties["write.merge.mode"] == "merge-on-read"
    latest = latest_snapshot(lake.resource, lake.table("latest_summary"))
    assert latest is not None and int(latest["added-records"]) == 1 and int(latest["added-position-deletes"]) == 1


def test_copy_on_write_gives_the_same_tables(spark: SparkSession, spark_resource: SparkIceberg) -> None:
    lake = Lake(spark, spark_resource, write_mode="copy-on-write")
    _late_run(lake)
    lake.assert_matches_model()
    summary = latest_snapshot(lake.resource, lake.table("summary"))
    assert summary is not None and int(summary.get("added-position-deletes", 0)) == 0
    assert int(summary["deleted-data-files"]) > 0  # copy-on-write replaced the files holding changed rows


def test_compact_merges_the_deletes_into_the_data(merge_on_read: tuple[Lake, RunReport]) -> None:
    lake, _ = merge_on_read
    rows = lake.rows("summary")

    def delete_files(table: str) -> int:
        return int(lake.spark.sql(f"SELECT count(*) AS n FROM {lake.table(table)}.delete_files").first()["n"])  # type: ignore[index]

    assert delete_files("summary") > 0 and delete_files("latest_summary") > 0
    compacted = compact(lake.lakehouse, "compact-test")
    assert compacted["summary"]["rewritten_data_files_count"] > 0
    assert delete_files("summary") == 0 and delete_files("latest_summary") == 0
    assert lake.rows("summary") == rows  # the same rows, in new files
    lake.assert_matches_model()
    assert open_runs(lake.lakehouse) == []  # the lock was taken and released


def test_an_unknown_write_mode_is_refused_naming_the_field(spark_resource: SparkIceberg) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"write_mode\s+Input should be 'merge-on-read'"):
        Lakehouse(spark=spark_resource, write_mode="merge")  # type: ignore[arg-type]
