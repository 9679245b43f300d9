"""Column contracts of the tables (docs/spec.md §2): columns, DDL, partitioning and unique keys, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

HISTORY_LENGTH = 36
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"  # a `rpt_as_of_mo` key: YYYY-MM, month 01-12
CASES = ("I", "II", "III", "IV")  # how a record relates to its account's latest month (§5)
KEY = ("cons_acct_key", "rpt_as_of_mo")
DELETE_CODES = ("1", "4")
AMOUNT_SENTINELS = (-2147483647, -214748364, -21474836, -1)

# summary scalar column -> accounts_all column it comes from
SCALAR_SOURCES: dict[str, str] = {
    "soft_del_cd": "soft_del_cd",
    "credit_limit_am": "acct_credit_ext_am",
    "balance_am": "acct_bal_am",
    "past_due_am": "past_due_am",
    "actual_payment_am": "actual_pymt_am",
    "days_past_due": "days_past_due_ct_4in",
    "asset_class_cd": "asset_class_cd_4in",
    "acct_stat_cd": "acct_stat_cd",
}
SENTINEL_AMOUNTS = ("credit_limit_am", "balance_am", "past_due_am", "actual_payment_am")

# history array -> the summary scalar whose month values it holds
HISTORIES: dict[str, str] = {
    "actual_payment_am_history": "actual_payment_am",
    "balance_am_history": "balance_am",
    "credit_limit_am_history": "credit_limit_am",
    "past_due_am_history": "past_due_am",
    "payment_rating_cd_history": "payment_rating_cd",
    "days_past_due_history": "days_past_due",
    "asset_class_cd_4in_history": "asset_class_cd",
}
GRID = "payment_history_grid"

_I, _S, _L, _T = IntegerType(), StringType(), LongType(), TimestampType()


def _schema(columns: list[tuple[str, DataType, bool]]) -> StructType:
    return StructType([StructField(n, t, nullable) for n, t, nullable in columns])


ACCOUNTS_ALL = _schema(
    [
        ("cons_acct_key", _L, False),
        ("rpt_as_of_mo", _S, False),
        ("base_ts", _T, False),
        ("insert_ts", _T, True),
        ("update_ts", _T, True),
        ("soft_del_cd", _S, True),
        ("acct_credit_ext_am", _I, True),
        ("acct_bal_am", _I, True),
        ("past_due_am", _I, True),
        ("actual_pymt_am", _I, True),
        ("days_past_due_ct_4in", _I, True),
        ("asset_class_cd_4in", _S, True),
        ("acct_stat_cd", _S, True),
    ]
)

SCALAR_TYPES: dict[str, DataType] = {
    "soft_del_cd": _S,
    "credit_limit_am": _I,
    "balance_am": _I,
    "past_due_am": _I,
    "actual_payment_am": _I,
    "days_past_due": _I,
    "asset_class_cd": _S,
    "payment_rating_cd": _S,
    "acct_stat_cd": _S,
}
SCALARS = tuple(SCALAR_TYPES)

SUMMARY = _schema(
    [("cons_acct_key", _L, False), ("rpt_as_of_mo", _S, False), ("base_ts", _T, True)]
    + [(name, t, True) for name, t in SCALAR_TYPES.items()]
    + [(h, ArrayType(SCALAR_TYPES[v]), True) for h, v in HISTORIES.items()]
    + [(GRID, _S, True)]
)
SUMMARY_COLUMNS = tuple(SUMMARY.fieldNames())

# the tables a user imports and exports
SCHEMAS: dict[str, StructType] = {"accounts_all": ACCOUNTS_ALL, "summary": SUMMARY, "latest_summary": SUMMARY}

# ---- intermediate assets (stored by the IO manager, one Iceberg partition per late month)
_B = BooleanType()
CLASSIFIED = _schema(
    [("cons_acct_key", _L, False), ("rpt_as_of_mo", _S, False), ("base_ts", _T, False)]
    + [(name, t, True) for name, t in SCALAR_TYPES.items()]
    + [("is_deleted", _B, False), ("latest_mo", _S, True), ("case_type", _S, False)]
)
JOINED = _schema(
    [(f.name, f.dataType, f.nullable) for f in CLASSIFIED.fields]
    + [("own_row", _S, False), ("base_mo", _S, True), ("target_mos", ArrayType(_S), False)]
)
PATCHES = _schema(
    [
        ("cons_acct_key", _L, False),
        ("rpt_as_of_mo", _S, False),
        ("target_mo", _S, False),
        ("position", _I, False),
        ("base_ts", _T, False),
        ("is_deleted", _B, False),
    ]
    + [(name, t, True) for name, t in SCALAR_TYPES.items()]
    + [("own_row", _S, True), ("base_mo", _S, True)]
)


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


# the tables of docs/spec.md §2 and the intermediate assets the IO manager stores
CONTRACTS: dict[str, Contract] = {
    "accounts_all": Contract(ACCOUNTS_ALL),
    "summary": Contract(SUMMARY, unique=KEY),
    "latest_summary": Contract(SUMMARY, partitioned=False, unique=(KEY[0],)),
    "classified_accounts": Contract(CLASSIFIED, unique=KEY),
    "joined_windows": Contract(JOINED, unique=KEY),
    "updated_histories": Contract(PATCHES),
}
