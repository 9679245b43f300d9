"""A frame from outside (an import, a generated data set) as content of a table: the contract's columns
in its order and types, and every problem that stops it.

Types are judged from the schema alone, so a file that does not fit costs no Spark job; only
lossless widenings are accepted (see `_WIDENINGS`); the rows then go through `validation.check_frame`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.models import Bounds
from backfill_assets.contracts.validation import Problem, check_frame

# Source types accepted for a contract type, and converted by an explicit cast. Only lossless widenings:
# a narrower integer, and a timestamp without time zone (its wall clock is read as UTC, the
# project's session time zone). Everything else (a string for a timestamp, a bigint for an INT, a
# double for an amount) is refused rather than guessed.
_WIDENINGS: dict[type[DataType], tuple[type[DataType], ...]] = {
    LongType: (LongType, IntegerType, ShortType, ByteType),
    IntegerType: (IntegerType, ShortType, ByteType),
    StringType: (StringType,),
    TimestampType: (TimestampType, TimestampNTZType),
    DoubleType: (DoubleType, FloatType, IntegerType, ShortType, ByteType),
    DateType: (DateType,),
    BooleanType: (BooleanType,),
}


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
    if isinstance(target, DecimalType):  # as many digits before and after the point, or fewer
        if isinstance(source, DecimalType):
            return source.scale <= target.scale and source.precision - source.scale <= target.precision - target.scale
        integer_digits: dict[type[DataType], int] = {LongType: 19, IntegerType: 10, ShortType: 5, ByteType: 3}
        digits = integer_digits.get(type(source))
        return digits is not None and digits <= target.precision - target.scale
    return isinstance(source, _WIDENINGS.get(type(target), (type(target),)))


def _schema_problems(df: DataFrame, table: str, spec: StructType, layout: Layout) -> list[Problem]:
    fields = {f.name: f.dataType for f in df.schema.fields}
    out = []
    if table != "accounts_all":  # a summary file carries the layout's columns exactly; accounts_all may have more
        where = f"not a column of the layout ({layout.origin})"
        out += [Problem(table, name, where) for name in fields if name not in spec.fieldNames()]
    for f in spec.fields:
        if f.name not in fields:
            out.append(Problem(table, f.name, f"missing (contract type {f.dataType.simpleString()})"))
        elif not _fits(fields[f.name], f.dataType):
            got = fields[f.name].simpleString()
            out.append(Problem(table, f.name, f"type {got} does not fit contract type {f.dataType.simpleString()}"))
    return out


def conform(df: DataFrame, spec: StructType) -> DataFrame:
    """The contract columns in contract order, cast to the contract types (extra columns dropped)."""
    return df.select(*[df[f.name].cast(f.dataType).alias(f.name) for f in spec.fields])


def check_table(df: DataFrame, table: str, layout: Layout, bounds: Bounds | None = None) -> Checked:
    """Every problem of `df` as content of `table` (accounts_all, summary or latest_summary) under `layout`.

    Types are checked first from the schema alone, with the lossless widenings import accepts, so a
    schema problem costs no Spark job; the conformed frame then goes through `check_frame`.
    """
    if table not in layout.schemas:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(layout.schemas)}")
    spec = layout.schemas[table]
    schema = _schema_problems(df, table, spec, layout)
    if schema:
        return Checked(None, schema)
    frame = conform(df, spec)
    return Checked(frame, check_frame(frame, table, layout, bounds).problems)


def validate_table(df: DataFrame, table: str, layout: Layout) -> DataFrame:
    """`df` as `table` content (contract columns, order and types), or ValidationError naming every ERROR problem."""
    checked = check_table(df, table, layout)
    errors = [p for p in checked.problems if p.severity == "ERROR"]
    if errors or checked.frame is None:
        raise ValidationError(errors)
    return checked.frame
