"""What every table shares whatever the layout: keys, cases, delete codes, DDL and the `Contract` of a table.

The columns themselves follow the summary layout (`contracts.layout`, docs/spec.md §8)."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import StructType

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"  # a `rpt_as_of_mo` key: YYYY-MM, month 01-12
CASES = ("I", "II", "III", "IV")  # how a record relates to its account's latest month (§5)
KEY = ("cons_acct_key", "rpt_as_of_mo")
DELETE_CODES = ("1", "4")
# the tables a user imports and exports; their columns (and the intermediate assets') follow the layout
USER_TABLES = ("accounts_all", "summary", "latest_summary")


def ddl(schema: StructType) -> str:
    """Spark DDL column list of a schema, for CREATE TABLE (NOT NULL is enforced by validation instead)."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema.fields)


PARTITION = "rpt_as_of_mo"


def create_table(name: str, columns: str, partitioned: bool, if_not_exists: bool = True) -> str:
    """The CREATE TABLE statement of an Iceberg table: `columns` in DDL, monthly tables by `rpt_as_of_mo`."""
    exists = "IF NOT EXISTS " if if_not_exists else ""
    partitioning = f" PARTITIONED BY ({PARTITION})" if partitioned else ""
    return f"CREATE TABLE {exists}{name} ({columns}) USING iceberg{partitioning}"


@dataclass(frozen=True)
class Contract:
    """A table's columns, whether it is partitioned by month, and its unique key (if any)."""

    schema: StructType
    partitioned: bool = True
    unique: tuple[str, ...] | None = None

    def create_sql(self, name: str, if_not_exists: bool = True) -> str:
        return create_table(name, ddl(self.schema), self.partitioned, if_not_exists)
