"""What one command works with: the Spark resource, the lakehouse and the Dagster definitions.

Spark and catalog settings come from `definitions.defs.resources["spark"]` (one place to configure);
table names and the layout from its `lakehouse` resource. Tests inject their own via `main(spark=..., layout_file=...)`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pyspark.errors import AnalysisException

from backfill_assets import definitions
from backfill_assets.cli.errors import EXIT_REFUSED, CliError
from backfill_assets.contracts.tables import USER_TABLES
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.spark import SparkIceberg

TABLES = USER_TABLES  # accounts_all, summary, latest_summary


class Context:
    """The Spark resource, lakehouse and Dagster definitions one command works with."""

    def __init__(self, spark: SparkIceberg | None, namespace: str | None, layout_file: str | None = None) -> None:
        resources = definitions.defs.resources or {}
        base_spark, base_lakehouse = resources["spark"], resources["lakehouse"]
        assert isinstance(base_spark, SparkIceberg) and isinstance(base_lakehouse, Lakehouse)
        resource = spark or base_spark
        if namespace:
            resource = _with(resource, namespace=namespace)
        self.spark = resource
        if resource is base_spark and layout_file is None:
            self.lakehouse, self.defs = base_lakehouse, definitions.defs
        else:
            layout = base_lakehouse.layout_file if layout_file is None else layout_file
            self.lakehouse = Lakehouse(**{**_fields(base_lakehouse), "spark": resource, "layout_file": layout})
            self.defs = definitions.build_defs(resource, self.lakehouse)

    def table_name(self, table: str) -> str:
        """Qualified name of a contract table, honouring table names configured on the lakehouse."""
        if table not in TABLES:
            raise CliError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}", EXIT_REFUSED)
        return self.lakehouse.contract_table(table)

    def exists(self, name: str) -> bool:
        try:
            self.spark.session.table(name)
        except AnalysisException:
            return False
        return True


def _with(resource: SparkIceberg, **changes: Any) -> SparkIceberg:
    return SparkIceberg(**{**_fields(resource), **changes})


def _fields(resource: dg.ConfigurableResource) -> dict[str, Any]:
    return {k: getattr(resource, k) for k in type(resource).model_fields}
