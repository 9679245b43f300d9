"""Check a DataFrame against the table contracts of SPEC §2 before anything is written.

Schema problems (missing columns, types that do not fit) are found from the schema alone; data
problems (NULL keys, malformed months, history arrays of the wrong length, duplicate keys) are
counted in ONE Spark aggregation, with the smallest offending key of each rule as an example, so
that a refusal costs one scan and names a row the user can look up.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    ByteType,
    DataType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from backfill_assets.tables import GRID, HISTORIES, HISTORY_LENGTH, SCHEMAS
from backfill_assets.transforms.months import MONTH_PATTERN
from backfill_assets.transforms.values import is_deleted

A, M = "cons_acct_key", "rpt_as_of_mo"

# Source types accepted for a SPEC type, and converted by an explicit cast. Only lossless widenings:
# a narrower integer, and a timestamp without time zone (its wall clock is read as UTC, the
# project's session time zone). Everything else (a string for a timestamp, a bigint for an INT, a
# double for an amount) is refused rather than guessed.
_WIDENINGS: dict[type[DataType], tuple[type[DataType], ...]] = {
    LongType: (LongType, IntegerType, ShortType, ByteType),
    IntegerType: (IntegerType, ShortType, ByteType),
    StringType: (StringType,),
    TimestampType: (TimestampType, TimestampNTZType),
}

# the rows that must be unique, per table
_UNIQUE: dict[str, tuple[str, ...]] = {"summary": (A, M), "latest_summary": (A,)}


@dataclass(frozen=True)
class Problem:
    """One violated rule: where, what, how many rows, and the smallest offending key."""

    table: str
    column: str
    rule: str
    rows: int | None = None
    example: tuple[int | None, str | None] | None = None
    unit: str = "row"

    @property
    def message(self) -> str:
        details = []
        if self.rows is not None:
            details.append(f"{self.rows} {self.unit}{'' if self.rows == 1 else 's'}")
        if self.example is not None:
            a, m = self.example
            details.append(f"e.g. {A}={'NULL' if a is None else a}, {M}={'NULL' if m is None else repr(m)}")
        text = f"{self.table}: column {self.column}: {self.rule}"
        return f"{text} ({', '.join(details)})" if details else text

    def __str__(self) -> str:
        return self.message


class ValidationError(ValueError):
    """A frame that does not fit its table; the message lists every problem on one line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


@dataclass(frozen=True)
class Checked:
    """The outcome of `check_table`: the conformed frame (None if the schema does not fit) and the problems."""

    frame: DataFrame | None
    problems: list[Problem]


def _fits(source: DataType, target: DataType) -> bool:
    """Whether `source` converts to `target` without loss (array element types alike; nullability ignored)."""
    if isinstance(target, ArrayType):
        return isinstance(source, ArrayType) and _fits(source.elementType, target.elementType)
    return isinstance(source, _WIDENINGS.get(type(target), (type(target),)))


def _schema_problems(df: DataFrame, table: str, spec: StructType) -> list[Problem]:
    fields = {f.name: f.dataType for f in df.schema.fields}
    out = []
    for f in spec.fields:
        if f.name not in fields:
            out.append(Problem(table, f.name, f"missing (SPEC type {f.dataType.simpleString()})"))
        elif not _fits(fields[f.name], f.dataType):
            got = fields[f.name].simpleString()
            out.append(Problem(table, f.name, f"type {got} does not fit SPEC type {f.dataType.simpleString()}"))
    return out


def conform(df: DataFrame, spec: StructType) -> DataFrame:
    """The SPEC columns in SPEC order, cast to the SPEC types (extra columns dropped)."""
    return df.select(*[df[f.name].cast(f.dataType).alias(f.name) for f in spec.fields])


def _rules(table: str) -> list[tuple[str, str, Column]]:
    """(column, rule, condition that is true for a violating row) of the row-level rules of `table`."""
    month = F.col(M)
    rules = [
        (A, "must not be NULL", F.col(A).isNull()),
        (M, "must not be NULL", month.isNull()),
        (M, "must be a month 'YYYY-MM' with month 01-12", month.isNotNull() & ~month.rlike(MONTH_PATTERN)),
    ]
    if table == "accounts_all":
        rules.append(("base_ts", "must not be NULL", F.col("base_ts").isNull()))
        return rules
    # history arrays and the grid: 36 positions; NULL only on a deleted row, whose content is unspecified
    active = ~is_deleted(F.col("soft_del_cd"))
    for column in (*HISTORIES, GRID):
        value = F.col(column)
        length = F.length(value) if column == GRID else F.size(value)
        unit = "characters" if column == GRID else "elements"
        bad = F.when(value.isNull(), active).otherwise(length != HISTORY_LENGTH)
        rules.append((column, f"must hold {HISTORY_LENGTH} {unit} (NULL only on a deleted row)", bad))
    return rules


def _data_problems(frame: DataFrame, table: str) -> list[Problem]:
    """All row-level rules and the uniqueness rule, counted in one aggregation (one Spark job)."""
    rules = _rules(table)
    key = F.struct(F.col(A).alias("a"), F.col(M).alias("m"))
    flags = [F.coalesce(cond, F.lit(False)) for _, _, cond in rules]
    unique = _UNIQUE.get(table)
    if unique is None:
        aggs = [F.count(F.when(f, True)) for f in flags] + [F.min(F.when(f, key)) for f in flags]
        row = frame.agg(*[a.alias(f"_{i}") for i, a in enumerate(aggs)]).first()
        duplicates, duplicate_example = 0, None
    else:
        # per key first (counts and smallest key per rule), then over all keys: still one job
        per_key = frame.groupBy(*unique).agg(
            F.count(F.lit(1)).alias("_n"),
            F.min(key).alias("_k"),
            *[F.count(F.when(f, True)).alias(f"_c{i}") for i, f in enumerate(flags)],
            *[F.min(F.when(f, key)).alias(f"_e{i}") for i, f in enumerate(flags)],
        )
        totals = (
            [F.sum(f"_c{i}") for i in range(len(flags))]
            + [F.min(f"_e{i}") for i in range(len(flags))]
            + [F.count(F.when(F.col("_n") > 1, True)), F.min(F.when(F.col("_n") > 1, F.col("_k")))]
        )
        row = per_key.agg(*[a.alias(f"_{i}") for i, a in enumerate(totals)]).first()
        assert row is not None
        duplicates, duplicate_example = int(row[2 * len(flags)] or 0), row[2 * len(flags) + 1]
    assert row is not None
    out = []
    for i, (column, rule, _) in enumerate(rules):
        count = int(row[i] or 0)
        if count:
            example = row[len(flags) + i]
            out.append(Problem(table, column, rule, count, (example["a"], example["m"])))
    if duplicates and unique is not None:
        ex = (duplicate_example["a"], duplicate_example["m"]) if duplicate_example else None
        unit = "duplicated key"
        out.append(Problem(table, ", ".join(unique), "key must be unique", duplicates, ex, unit))
    return out


def check_table(df: DataFrame, table: str) -> Checked:
    """Every problem of `df` as content of `table` (accounts_all, summary or latest_summary).

    Data rules run only when the schema fits (they need the SPEC types), so a schema problem costs no
    Spark job.
    """
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(SCHEMAS)}")
    spec = SCHEMAS[table]
    schema = _schema_problems(df, table, spec)
    if schema:
        return Checked(None, schema)
    frame = conform(df, spec)
    return Checked(frame, _data_problems(frame, table))


def validate_table(df: DataFrame, table: str) -> DataFrame:
    """`df` as `table` content (SPEC columns, order and types), or ValidationError naming every problem."""
    checked = check_table(df, table)
    if checked.problems or checked.frame is None:
        raise ValidationError(checked.problems)
    return checked.frame
