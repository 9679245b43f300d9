"""One SparkSession (with the Iceberg catalog on a temporary warehouse) for the whole test session, and the
test tiers: every test is marked `unit`, `integration` or `system` after the folder it is in, and the tiers
run in that order (a broken unit test fails first), or in the reverse order when pytest-xdist runs them
on several workers (the longest first)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from backfill_assets.resources.spark import SparkIceberg

TIERS = ("unit", "integration", "system")
_HERE = Path(__file__).resolve().parent


def _tier(item: pytest.Item) -> str | None:
    """The tier folder of a test of this package; None for a test elsewhere."""
    try:
        parts = item.path.resolve().relative_to(_HERE).parts
    except ValueError:
        return None
    if len(parts) < 2 or parts[0] not in TIERS:
        raise pytest.UsageError(f"{item.nodeid}: a test module belongs in one of {', '.join(f'{t}/' for t in TIERS)}")
    return parts[0]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tiers = {id(item): _tier(item) for item in items}
    for item in items:
        tier = tiers[id(item)]
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
    # In one process the cheap tiers go first (a broken unit test fails first). Spread over workers
    # (pytest-xdist hands out whole modules in this order), the long system modules go first, so
    # that the many short ones fill the gaps at the end instead of one worker idling.
    order = TIERS[::-1] if _parallel(config) else TIERS
    rank = {tier: i for i, tier in enumerate(order)}
    items.sort(key=lambda item: rank.get(tiers[id(item)] or "", len(TIERS)))  # stable: file order within a tier


def _parallel(config: pytest.Config) -> bool:
    """Whether pytest-xdist spreads this session over workers (the order matters to the controller)."""
    workers = config.getoption("numprocesses", default=None)
    return bool(workers) or "PYTEST_XDIST_WORKER" in os.environ


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
        driver_memory="3g",
        extra_conf={"spark.ui.enabled": "false", "spark.sql.adaptive.coalescePartitions.enabled": "true"},
    )


@pytest.fixture(scope="session")
def spark(spark_resource: SparkIceberg) -> Iterator[SparkSession]:
    os.environ["SPARK_TESTING"] = "1"
    session = spark_resource.session
    yield session
    session.stop()


@pytest.fixture(scope="module", autouse=True)
def _release_module_garbage() -> Iterator[None]:
    """After each module (its module fixtures torn down first), collect Python's and the JVM's garbage.

    One JVM serves a worker's hundreds of runs. Spark frees the storage blocks of finished queries (the
    broadcasts every Iceberg scan makes) only once the JVM has collected their plans; left to chance, they
    filled a worker's storage memory during the layout tests and later runs failed for execution memory.
    """
    yield
    session = SparkSession.getActiveSession()
    if session is not None:
        gc.collect()
        session.sparkContext._jvm.System.gc()  # type: ignore[attr-defined]
