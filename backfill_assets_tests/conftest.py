"""One SparkSession (with the Iceberg catalog on a temporary warehouse) for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.spark import SparkIceberg


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("warehouse")
    os.environ["BACKFILL_WAREHOUSE"] = str(path)
    return path


@pytest.fixture(scope="session")
def spark_resource(warehouse: Path) -> SparkIceberg:
    return SparkIceberg(
        master="local[2]",
        warehouse=str(warehouse),
        shuffle_partitions=2,
        driver_memory="2g",
        extra_conf={"spark.ui.enabled": "false", "spark.sql.adaptive.coalescePartitions.enabled": "true"},
    )


@pytest.fixture(scope="session")
def spark(spark_resource: SparkIceberg) -> Iterator[SparkSession]:
    os.environ["SPARK_TESTING"] = "1"
    session = spark_resource.session
    yield session
    session.stop()
