"""Everyday operation from Dagster: the load sensor, range backfills, and the run's config knobs."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from backfill_assets.jobs import BACKFILL_JOB, range_tags
from backfill_assets.partitions import MONTHLY
from backfill_assets.resources.options import BackfillOptions
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import run_pending
from backfill_assets.transforms.months import add_months, month_range
from backfill_assets_tests.fixtures import Lake, record, spark_jobs

LAST = MONTHLY.get_last_partition_key() or ""


def history(account: int, first: str, last: str) -> list[dict[str, object]]:
    return [record(account, m, acct_bal_am=100 + i) for i, m in enumerate(month_range(first, last))]


def evaluate(lake: Lake, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    sensor = lake.defs.resolve_sensor_def("accounts_loaded")
    with dg.build_sensor_context(
        instance=lake.instance, cursor=cursor, resources={"lakehouse": lake.lakehouse}, definitions=lake.defs
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def run_job(lake: Lake, tags: dict[str, str], **run_config: object) -> dg.ExecuteInProcessResult:
    return lake.defs.resolve_job_def(BACKFILL_JOB).execute_in_process(
        instance=lake.instance, tags=tags, run_config=run_config or None, raise_on_error=False
    )


def tables_snapshots(lake: Lake) -> tuple[int | None, int | None]:
    return lake.snapshot("summary"), lake.snapshot("latest_summary")


def test_sensor_requests_one_run_per_load_and_observes_its_months(
    spark: SparkSession, spark_resource: SparkIceberg
) -> None:
    lake = Lake(spark, spark_resource)
    assert isinstance(evaluate(lake, None), dg.SkipReason)  # no accounts_all yet
    lake.deliver(history(1, "2024-01", "2024-08") + history(2, "2024-01", "2024-08"))
    lake.run()

    # A load whose records are all applied moves the cursor and requests nothing.
    applied = evaluate(lake, None)
    assert isinstance(applied, dg.SensorResult) and not applied.run_requests and applied.cursor

    lake.deliver([record(1, "2024-03", acct_bal_am=7), record(2, "2024-05", acct_bal_am=8)])
    first = evaluate(lake, applied.cursor)
    assert isinstance(first, dg.SensorResult) and first.cursor != applied.cursor
    [request] = first.run_requests or []
    assert request.tags["dagster/asset_partition_range_start"] == "2024-03"
    assert request.tags["dagster/asset_partition_range_end"] == min(add_months("2024-05", 35), LAST)
    assert request.run_key == f"accounts_all@{lake.snapshot('accounts_all')}"
    [loaded, *observations] = first.asset_events or []  # the load, with the columns column_schema_change compares
    assert isinstance(loaded, dg.AssetMaterialization) and loaded.partition is None
    assert isinstance(loaded.metadata["dagster/column_schema"].value, dg.TableSchema)
    observed = {e.partition: e for e in observations}
    assert sorted(observed) == ["2024-03", "2024-05"]
    assert all(isinstance(e, dg.AssetObservation) and e.asset_key.path == ["accounts_all"] for e in observed.values())
    assert observed["2024-03"].metadata["records_in_those_files"].value == 1

    # The same load never triggers twice.
    again = evaluate(lake, first.cursor)
    assert isinstance(again, dg.SkipReason)

    # The requested run applies the load exactly.
    done = run_job(lake, dict(request.tags))
    assert done.success
    lake.model.run()
    lake.assert_matches_model()
    applied_now = evaluate(lake, None)  # nothing is left unapplied at that snapshot
    assert isinstance(applied_now, dg.SensorResult) and not applied_now.run_requests


def test_a_range_backfill_equals_the_run_and_rematerialising_changes_nothing(
    spark: SparkSession, spark_resource: SparkIceberg
) -> None:
    lake = Lake(spark, spark_resource)
    lake.deliver(history(1, "2023-01", "2024-12") + history(2, "2023-06", "2024-12"))
    lake.run()
    lake.deliver([record(1, "2023-04", acct_bal_am=None), record(2, "2024-02", soft_del_cd="1")])

    # A UI range that misses the late months' reach is refused, naming the range it needs.
    short = run_job(lake, range_tags("2023-04", "2024-06"))
    assert not short.success
    failure = next(e for e in short.all_events if e.is_step_failure).step_failure_data.error
    assert failure is not None and f"a run must cover partitions 2023-04...{min(add_months('2024-02', 35), LAST)}" in (
        failure.message
    )

    # Any wider range works, in one run, like `backfill-assets run`.
    wide = run_job(lake, range_tags("2022-01", LAST))
    assert wide.success
    lake.model.run()
    lake.assert_matches_model()
    assert_the_run_says_what_it_did(lake, wide)

    # Re-materialising processed partitions (one, or a range) commits nothing.
    before = tables_snapshots(lake)
    for tags in (range_tags("2023-04", "2023-04"), range_tags("2023-01", LAST)):
        again = run_job(lake, tags)
        assert again.success
        assert tables_snapshots(lake) == before
        summary = again.asset_materializations_for_node("summary_backfilled")[0]
        assert summary.metadata["summary_rows_written"].value == 0
    lake.assert_matches_model()


def assert_the_run_says_what_it_did(lake: Lake, run: dg.ExecuteInProcessResult) -> None:
    """Case counts by month, rows read and written per month, the snapshot committed, durations, progress."""
    classified = run.asset_materializations_for_node("classified_accounts")[0].metadata
    assert classified["case_III"].value == 2 and classified["duration_s"].value > 0
    assert str(classified["cases_by_month"].value).splitlines()[0] == "| rpt_as_of_mo | I | II | III | IV |"
    assert "| 2023-04 | 0 | 0 | 1 | 0 |" in str(classified["cases_by_month"].value)
    summary = run.asset_materializations_for_node("summary_backfilled")[0].metadata
    assert summary["summary_snapshot_id"].value == str(lake.snapshot("summary"))
    assert summary["latest_snapshot_id"].value == str(lake.snapshot("latest_summary"))
    # account 1: 2023-04 … 2024-12 (21 rows); account 2: its deleted 2024-02 row and 2024-03 … 2024-12 (11)
    assert summary["summary_rows_written"].value == 21 + 11 and summary["months_touched"].value == 21
    by_month = str(summary["rows_by_month"].value)
    assert by_month.splitlines()[0] == "| rpt_as_of_mo | rows_read | rows_written |"
    assert "| 2024-02 | 2 | 2 |" in by_month and summary["summary_rows_read"].value >= 32
    assert summary["duration_s"].value > 0
    messages = [e.message for e in lake.instance.all_logs(run.run_id) if e.message]
    assert any("write checks passed; publishing" in m for m in messages)
    assert any(m.startswith(f"published summary snapshot {lake.snapshot('summary')}") for m in messages)
    assert summary["tag"].value == f"run-{run.run_id}"


def corrupt(lake: Lake, account: int, month: str) -> None:
    lake.spark.sql(
        f"UPDATE {lake.table('summary')} SET balance_am = 999999"
        f" WHERE cons_acct_key = {account} AND rpt_as_of_mo = '{month}'"
    )


def test_full_refresh_and_watermark_override_reapply_applied_records(
    spark: SparkSession, spark_resource: SparkIceberg
) -> None:
    lake = Lake(spark, spark_resource)
    lake.deliver(history(1, "2024-01", "2024-06") + history(2, "2024-01", "2024-06"))
    lake.run()
    late = record(1, "2024-02", acct_bal_am=5)
    lake.deliver([late])
    lake.run()
    assert run_pending(lake.defs, lake.instance).partitions is None  # nothing pending

    corrupt(lake, 1, "2024-03")
    refresh = run_pending(lake.defs, lake.instance, BackfillOptions(refresh_from="2024-03", refresh_to="2024-03"))
    assert refresh.success and refresh.partitions == ("2024-03", min(add_months("2024-03", 35), LAST))
    assert refresh.metadata["classified_accounts"]["case_III"] == 2  # both accounts' 2024-03 re-applied
    lake.assert_matches_model()

    corrupt(lake, 1, "2024-02")
    override = late["base_ts"] - dt.timedelta(seconds=1)
    again = run_pending(lake.defs, lake.instance, BackfillOptions(watermark_override=override.isoformat()))
    assert again.success and again.partitions is not None and again.partitions[0] == "2024-02"
    assert again.metadata["classified_accounts"]["records"] == 1  # only the record after the override
    lake.assert_matches_model()
    assert run_pending(lake.defs, lake.instance).partitions is None  # the stored watermark is where it was


def test_the_watermark_and_pending_loads_are_read_once_per_state_of_their_tables(
    spark: SparkSession, spark_resource: SparkIceberg
) -> None:
    """Every step of a run asks for them: the second ask costs no Spark job, until a load or a commit."""
    lake = Lake(spark, spark_resource)
    lake.deliver(history(1, "2024-01", "2024-03"))
    lake.run()
    lakehouse = lake.lakehouse
    watermark = lakehouse.watermark()
    assert lakehouse.pending_months(watermark) == []
    assert spark_jobs(spark, lambda: (lakehouse.watermark(), lakehouse.pending_months(watermark))) == 0

    lake.deliver([record(1, "2024-02", acct_bal_am=5)])  # a new snapshot of accounts_all
    assert lakehouse.pending_months(watermark) == ["2024-02"]
    lake.run()  # a new snapshot of the state table
    later = lakehouse.watermark()
    assert watermark is not None and later is not None and later > watermark
    assert lakehouse.pending_months(later) == []


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"refresh_to": "2024-02"}, "refresh_to"),
        ({"refresh_from": "2024-13"}, "refresh_from"),
        ({"refresh_from": "2024-05", "refresh_to": "2024-01"}, "refresh_to"),
        ({"watermark_override": "yesterday"}, "watermark_override"),
        ({"refresh_form": "2024-01"}, "refresh_form"),
        ({"watermark_override": 36}, "watermark_override"),
    ],
)
def test_a_wrong_run_config_value_fails_before_any_step_naming_the_field(
    spark: SparkSession, spark_resource: SparkIceberg, config: dict[str, object], field: str
) -> None:
    lake = Lake(spark, spark_resource)
    lake.deliver(history(1, "2024-01", "2024-03"))
    with pytest.raises((dg.DagsterInvalidConfigError, dg.DagsterResourceFunctionError)) as error:
        lake.defs.resolve_job_def(BACKFILL_JOB).execute_in_process(
            instance=lake.instance,
            tags=range_tags("2024-01", LAST),
            run_config={"resources": {"options": {"config": config}}},
        )
    assert field in f"{error.value} {error.value.__cause__}"  # the run log shows both
    assert not spark.catalog.tableExists(lake.table("summary"))  # no step ran
