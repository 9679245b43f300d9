"""The code location loads, and its shape is the one the users chose."""

from __future__ import annotations

import dagster as dg
import pytest
from pyspark import StorageLevel
from pyspark.sql import SparkSession

from backfill_assets.backfill import _Cached
from backfill_assets.definitions import defs
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.verify_check import VERIFY_CHECK_KEY

SOURCE_CHECKS = {
    dg.AssetCheckKey(dg.AssetKey("summary_backfilled"), "load_freshness"),
    dg.AssetCheckKey(dg.AssetKey("accounts_all"), "column_schema_change"),
}
GRAPH = ["classified_accounts", "case3_backfill", "joined_windows", "updated_histories", "summary_backfilled"]


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_graph_assets_are_monthly_single_run() -> None:
    graph = defs.resolve_asset_graph()
    for name in [*GRAPH, "new_and_forward_accounts"]:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def is not None and node.partitions_def.get_first_partition_key() == "2015-01"
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert graph.get(dg.AssetKey("summary_backfilled")).parent_keys >= {
        dg.AssetKey("updated_histories"),
        dg.AssetKey("classified_accounts"),
    }


def test_every_graph_asset_has_blocking_checks() -> None:
    """The checks the UI lists on each asset's Checks tab; all blocking, so a failure stops the run, except the
    on-demand audit `summary_verified`, which backfill_job leaves out."""
    graph = defs.resolve_asset_graph()
    checks: dict[str, set[str]] = {}
    for key in graph.asset_check_keys - SOURCE_CHECKS:
        checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
        assert graph.get_check_spec(key).blocking == (key.name != "summary_verified"), key
    job_checks = defs.resolve_job_def("backfill_job").asset_layer.asset_graph.asset_check_keys
    assert job_checks == graph.asset_check_keys - SOURCE_CHECKS - {VERIFY_CHECK_KEY}
    assert checks == {
        "classified_accounts": {"source_records_valid", "latest_summary_valid", "output_valid"},
        "case3_backfill": {"output_valid"},
        "new_and_forward_accounts": {"output_valid"},
        "joined_windows": {"output_valid"},
        "updated_histories": {"output_valid"},
        "summary_backfilled": {
            "summary_window_valid",
            "latest_summary_agrees",
            "summary_rows_valid",
            "latest_rows_valid",
            "summary_verified",
        },
    }


@pytest.mark.parametrize(
    ("catalog_type", "uri", "expected"),
    [
        ("hadoop", None, {"spark.sql.catalog.lake.type": "hadoop"}),
        (
            "hive",
            "thrift://meta:9083",
            {"spark.sql.catalog.lake.type": "hive", "spark.sql.catalog.lake.uri": "thrift://meta:9083"},
        ),
        (
            "rest",
            "http://rest:8181",
            {"spark.sql.catalog.lake.type": "rest", "spark.sql.catalog.lake.uri": "http://rest:8181"},
        ),
        ("glue", None, {"spark.sql.catalog.lake.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog"}),
    ],
)
def test_spark_conf_per_catalog_type(catalog_type: str, uri: str | None, expected: dict[str, str]) -> None:
    conf = SparkIceberg(catalog_type=catalog_type, catalog_uri=uri, warehouse="s3://bucket/wh").spark_conf()
    assert expected.items() <= conf.items()
    assert conf["spark.sql.catalog.lake.warehouse"] == "s3://bucket/wh"
    assert conf["spark.sql.extensions"].endswith("IcebergSparkSessionExtensions")


def test_extra_conf_wins_and_master_is_configurable() -> None:
    conf = SparkIceberg(master="spark://h:7077", extra_conf={"spark.sql.shuffle.partitions": "400"}).spark_conf()
    assert conf["spark.master"] == "spark://h:7077" and conf["spark.sql.shuffle.partitions"] == "400"
    assert SparkIceberg().spark_conf()["spark.sql.codegen.hugeMethodLimit"] == "8000"  # methods the JIT compiles
    limit = {"spark.sql.codegen.hugeMethodLimit": "65535"}
    assert SparkIceberg(extra_conf=limit).spark_conf()["spark.sql.codegen.hugeMethodLimit"] == "65535"


def test_cached_frames_are_kept_at_the_configured_level(spark: SparkSession) -> None:
    """Off the heap by default (local mode: the executors share the driver's JVM); a cluster may choose memory."""
    assert SparkIceberg().storage_level == StorageLevel.DISK_ONLY
    assert SparkIceberg(cache_level="MEMORY_AND_DISK").storage_level == StorageLevel.MEMORY_AND_DISK
    with pytest.raises(Exception, match="cache_level"):
        SparkIceberg(cache_level="MEMORY_PLEASE")
    frames = _Cached(StorageLevel.MEMORY_AND_DISK)
    cached = frames._cache(spark.range(3))
    assert cached.storageLevel == StorageLevel.MEMORY_AND_DISK
    frames.__exit__(None, None, None)
    assert cached.storageLevel == StorageLevel.NONE


def test_wrong_catalog_type_names_the_field() -> None:
    with pytest.raises(Exception, match="catalog_type"):
        SparkIceberg(catalog_type="oracle")


def test_spark_resource_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from backfill_assets.definitions import spark_from_env

    monkeypatch.setenv(
        "BACKFILL_SPARK_CONFIG", '{"master": "yarn", "catalog_type": "glue", "shuffle_partitions": 2000}'
    )
    res = spark_from_env()
    assert (res.master, res.catalog_type, res.shuffle_partitions) == ("yarn", "glue", 2000)
    monkeypatch.setenv("BACKFILL_SPARK_CONFIG", '{"catalog_typo": "glue"}')
    with pytest.raises(Exception, match="catalog_typo"):
        spark_from_env()


def test_the_load_sensor_targets_the_backfill_job_and_starts_stopped() -> None:
    sensor = defs.resolve_sensor_def("accounts_loaded")
    assert sensor.job_name == "backfill_job"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert {"lakehouse"} <= sensor.required_resource_keys


def test_source_checks_warn_on_their_own_schedule_and_stay_out_of_backfill_runs() -> None:
    """load_freshness and column_schema_change: non-blocking, in source_checks_job alone, scheduled (off by default)."""
    graph = defs.resolve_asset_graph()
    assert SOURCE_CHECKS <= graph.asset_check_keys
    assert not any(graph.get_check_spec(key).blocking for key in SOURCE_CHECKS)
    checks_of = {
        job: defs.resolve_job_def(job).asset_layer.asset_graph.asset_check_keys
        for job in ("backfill_job", "source_checks_job")
    }
    assert not checks_of["backfill_job"] & SOURCE_CHECKS and len(checks_of["backfill_job"]) == 11
    assert checks_of["source_checks_job"] == SOURCE_CHECKS
    assert not defs.resolve_job_def("source_checks_job").asset_layer.executable_asset_keys
    schedule = defs.resolve_schedule_def("source_checks_schedule")
    assert schedule.job_name == "source_checks_job" and schedule.cron_schedule == "0 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_maintenance_runs_as_a_job_on_a_stopped_daily_schedule() -> None:
    job = defs.resolve_job_def("maintain_job")
    assert {"lakehouse"} <= job.required_resource_keys
    schedule = defs.resolve_schedule_def("maintain_daily")
    assert schedule.job_name == "maintain_job" and schedule.cron_schedule == "0 3 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"backfill_job", "maintain_job"}


def test_maintain_covers_every_table_the_io_manager_writes() -> None:
    """`maintenance.INTERMEDIATE` names the IO manager's tables: the graph's assets `spark_io` stores (those
    with a `contract`; summary_backfilled commits to summary and latest_summary itself)."""
    from backfill_assets.resources.maintenance import INTERMEDIATE

    graph = defs.resolve_asset_graph()
    stored = {
        key.path[-1]
        for key in graph.materializable_asset_keys
        if graph.get(key).io_manager_key == "spark_io" and "contract" in graph.get(key).metadata
    }
    assert set(INTERMEDIATE) == stored
