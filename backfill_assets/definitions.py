"""Dagster definitions: the backfill graph, its resources, and the job the CLI and UI run."""

from __future__ import annotations

import json
import os
import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from backfill_assets import assets, monitors  # noqa: E402
from backfill_assets.io_manager import IcebergPartitionIOManager  # noqa: E402
from backfill_assets.jobs import backfill_job, maintain_job, maintain_schedule  # noqa: E402
from backfill_assets.resources.lakehouse import Lakehouse  # noqa: E402
from backfill_assets.resources.options import BackfillOptions  # noqa: E402
from backfill_assets.resources.quality import DataQuality  # noqa: E402
from backfill_assets.resources.spark import SparkIceberg  # noqa: E402
from backfill_assets.sensors import accounts_loaded  # noqa: E402
from backfill_assets.verify_check import summary_verified  # noqa: E402


def build_defs(
    spark: SparkIceberg,
    lakehouse: Lakehouse | None = None,
    quality: DataQuality | None = None,
    options: BackfillOptions | None = None,
) -> dg.Definitions:
    """The whole code location for one Spark/Iceberg configuration (tests build their own)."""
    lakehouse = lakehouse or Lakehouse(spark=spark)
    _ = lakehouse.layout  # a wrong layout file fails here, when the definitions load, naming the entry
    return dg.Definitions(
        assets=[
            assets.accounts_all,
            assets.classified_accounts,
            assets.case3_backfill,
            assets.new_and_forward_accounts,
            assets.joined_windows,
            assets.updated_histories,
            assets.summary_backfilled,
        ],
        asset_checks=[summary_verified, monitors.load_freshness, *monitors.source_schema_checks],
        jobs=[backfill_job, monitors.source_checks_job, maintain_job],
        schedules=[monitors.source_checks_schedule, maintain_schedule],
        sensors=[accounts_loaded],
        resources={
            "spark": spark,
            "lakehouse": lakehouse,
            "quality": quality or DataQuality(),
            "options": options or BackfillOptions(),
            "spark_io": IcebergPartitionIOManager(lakehouse=lakehouse),
        },
        executor=dg.in_process_executor,
    )


def spark_from_env() -> SparkIceberg:
    """The Spark resource as `BACKFILL_SPARK_CONFIG` (a JSON object of its fields) configures it.

    So a deployment points the same code at a cluster and a Glue/Hive/REST catalog by
    configuration alone; an unknown field or a wrong value fails at load, naming the field.
    """
    fields = json.loads(os.environ.get("BACKFILL_SPARK_CONFIG") or "{}")
    unknown = sorted(set(fields) - set(SparkIceberg.model_fields))
    if unknown:
        raise ValueError(f"BACKFILL_SPARK_CONFIG: unknown field(s) {', '.join(unknown)} of SparkIceberg")
    return SparkIceberg(**fields)


defs = build_defs(spark_from_env())
