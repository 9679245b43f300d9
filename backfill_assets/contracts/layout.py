"""The summary's layout (docs/spec.md §8): its scalars, histories, history length and grid.

A bureau's summary has columns of its own, so everything that knows a summary column (the tables'
schemas, the value rules, the rebuild of histories, the checks, `import`, `generate`) asks a
`Layout` instead of hard-wiring one. The layout comes from the YAML file named by `BACKFILL_LAYOUT`;
without it, it is `DEFAULT_LAYOUT`, exactly the table of §2. A wrong entry is refused when the file
is read, with a message naming the entry, before any table is touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from backfill_assets.contracts.tables import KEY, Contract

ENV = "BACKFILL_LAYOUT"
MAX_HISTORY_LENGTH = 120
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_TYPES: dict[str, DataType] = {
    "int": IntegerType(),
    "bigint": LongType(),
    "double": DoubleType(),
    "string": StringType(),
    "date": DateType(),
    "timestamp": TimestampType(),
    "boolean": BooleanType(),
}
_NUMERIC = ("int", "bigint", "double")
# columns every layout has; the summary keeps `soft_del_cd` of the winning record like a scalar
_S, _L, _T = StringType(), LongType(), TimestampType()
FIXED_SOURCE = (("cons_acct_key", _L, False), ("rpt_as_of_mo", _S, False), ("base_ts", _T, False))
FIXED_NAMES = ("cons_acct_key", "rpt_as_of_mo", "base_ts", "insert_ts", "update_ts", "soft_del_cd")


class LayoutError(ValueError):
    """A layout entry that cannot be used; the message names the file and the entry."""


def spark_type(name: str) -> DataType:
    """The Spark type of a layout type name (docs/spec.md §8); ValueError for an unknown one."""
    if name in _TYPES:
        return _TYPES[name]
    match = _DECIMAL.match(name)
    if match:
        precision, scale = int(match[1]), int(match[2])
        if 1 <= precision <= 38 and scale <= precision:
            return DecimalType(precision, scale)
    raise ValueError(f"unknown type {name!r}; expected one of {', '.join(_TYPES)}, decimal(p,s) with 1 <= p <= 38")


@dataclass(frozen=True)
class Scalar:
    """A summary column taken from the winning record: copied from `source` (sentinels made NULL), or the rating."""

    name: str
    type: str
    source: str | None = None
    sentinels: tuple[int | float, ...] = ()
    rating: tuple[str, str] | None = None  # (days past due scalar, asset class scalar), docs/spec.md §3

    @property
    def data_type(self) -> DataType:
        return spark_type(self.type)


@dataclass(frozen=True)
class Grid:
    """A string column rendering one history: position 0 leftmost, `missing` for NULL."""

    column: str
    history: str
    missing: str = "?"


@dataclass(frozen=True)
class Layout:
    """The summary's columns: fixed keys, `scalars`, `histories` (column -> scalar) of `history_length`, `grid`."""

    history_length: int
    scalars: tuple[Scalar, ...]
    histories: tuple[tuple[str, str], ...]
    grid: Grid | None
    origin: str = field(default="docs/spec.md §2", compare=False)

    # ---- what the transforms ask
    @property
    def reach(self) -> int:
        """How many later months a month's record can change (docs/spec.md §1: N − 1)."""
        return self.history_length - 1

    @cached_property
    def scalar_types(self) -> dict[str, DataType]:
        """Summary scalar column -> Spark type, `soft_del_cd` first (it is carried like a scalar)."""
        return {"soft_del_cd": _S, **{s.name: s.data_type for s in self.scalars}}

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return tuple(self.scalar_types)

    @cached_property
    def history_sources(self) -> dict[str, str]:
        """History column -> the scalar whose month values it holds."""
        return dict(self.histories)

    @cached_property
    def sources(self) -> dict[str, str]:
        """Copied summary scalar -> its `accounts_all` column (`soft_del_cd` included, the rating not)."""
        return {"soft_del_cd": "soft_del_cd", **{s.name: s.source for s in self.scalars if s.source}}

    def scalar(self, name: str) -> Scalar:
        return next(s for s in self.scalars if s.name == name)

    @cached_property
    def sentinels(self) -> dict[str, tuple[int | float, ...]]:
        """Summary column (scalar or history of one) -> the values that must not appear in it."""
        of_scalar = {s.name: s.sentinels for s in self.scalars if s.sentinels}
        return {**of_scalar, **{h: of_scalar[v] for h, v in self.histories if v in of_scalar}}

    # ---- the tables
    @cached_property
    def accounts_all(self) -> StructType:
        """The source table: fixed columns, then each scalar's source column with the scalar's type."""
        columns: dict[str, DataType] = {}
        for s in self.scalars:
            if s.source:
                columns.setdefault(s.source, s.data_type)
        return _schema(
            [*FIXED_SOURCE, ("insert_ts", _T, True), ("update_ts", _T, True), ("soft_del_cd", _S, True)]
            + [(name, t, True) for name, t in columns.items()]
        )

    @cached_property
    def summary(self) -> StructType:
        columns: list[tuple[str, DataType, bool]] = [
            ("cons_acct_key", _L, False),
            ("rpt_as_of_mo", _S, False),
            ("base_ts", _T, True),
        ]
        columns += [(name, t, True) for name, t in self.scalar_types.items()]
        columns += [(h, ArrayType(self.scalar_types[v]), True) for h, v in self.histories]
        columns += [(self.grid.column, _S, True)] if self.grid else []
        return _schema(columns)

    @property
    def summary_columns(self) -> tuple[str, ...]:
        return tuple(self.summary.fieldNames())

    @cached_property
    def classified(self) -> StructType:
        """`classified_accounts`: each winning record's summary values, its case and the account's latest month."""
        return _schema(
            [*FIXED_SOURCE]
            + [(name, t, True) for name, t in self.scalar_types.items()]
            + [("is_deleted", BooleanType(), False), ("latest_mo", _S, True), ("case_type", _S, False)]
        )

    @cached_property
    def joined(self) -> StructType:
        """`joined_windows`: a classified record with its own row, base month and the later rows it reaches."""
        return _schema(
            [(f.name, f.dataType, f.nullable) for f in self.classified.fields]
            + [("own_row", _S, False), ("base_mo", _S, True), ("target_mos", ArrayType(_S), False)]
        )

    @cached_property
    def patches(self) -> StructType:
        """`updated_histories`: one patch per row a record reaches, at its month's position there."""
        return _schema(
            [("cons_acct_key", _L, False), ("rpt_as_of_mo", _S, False), ("target_mo", _S, False)]
            + [("position", IntegerType(), False), ("base_ts", _T, False), ("is_deleted", BooleanType(), False)]
            + [(name, t, True) for name, t in self.scalar_types.items()]
            + [("own_row", _S, True), ("base_mo", _S, True)]
        )

    @cached_property
    def contracts(self) -> dict[str, Contract]:
        """The tables of docs/spec.md §2 and the intermediate assets the IO manager stores."""
        return {
            "accounts_all": Contract(self.accounts_all),
            "summary": Contract(self.summary, unique=KEY),
            "latest_summary": Contract(self.summary, partitioned=False, unique=(KEY[0],)),
            "classified_accounts": Contract(self.classified, unique=KEY),
            "joined_windows": Contract(self.joined, unique=KEY),
            "updated_histories": Contract(self.patches),
        }

    @property
    def schemas(self) -> dict[str, StructType]:
        """The tables a user imports and exports."""
        return {name: self.contracts[name].schema for name in ("accounts_all", "summary", "latest_summary")}

    # ---- as written in a file
    def to_mapping(self) -> dict[str, Any]:
        """The layout as docs/spec.md §8 writes it (`parse_layout(layout.to_mapping())` gives it back)."""

        def entry(s: Scalar) -> dict[str, Any]:
            if s.rating:
                return {"rating": {"days_past_due": s.rating[0], "asset_class": s.rating[1]}}
            out: dict[str, Any] = {"from": s.source, "type": s.type}
            return {**out, "sentinels": list(s.sentinels)} if s.sentinels else out

        g = self.grid
        grid = {"grid": {"column": g.column, "history": g.history, "missing": g.missing}} if g else {}
        return {
            "history_length": self.history_length,
            "scalars": {s.name: entry(s) for s in self.scalars},
            "histories": dict(self.histories),
            **grid,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_mapping(), sort_keys=False, default_flow_style=None, width=120)


def _schema(columns: list[tuple[str, DataType, bool]]) -> StructType:
    return StructType([StructField(n, t, nullable) for n, t, nullable in columns])


# ---- reading a layout file


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's loader keeps the last of two equal keys; a layout must refuse the second one."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise LayoutError(f"{key!r} is listed twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _entries(where: str, value: object, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise LayoutError(f"{where}: expected a mapping, got {value!r}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise LayoutError(f"{where}: unknown entry {unknown[0]!r}; expected {', '.join(allowed)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise LayoutError(f"{where}: missing {missing[0]!r}")
    return dict(value)


def _name(where: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise LayoutError(f"{where}: {value!r} is not a column name (letters, digits, _)")
    return value


def _scalar(name: str, value: object) -> Scalar:
    where = f"scalars.{name}"
    if isinstance(value, Mapping) and "rating" in value:
        entry = _entries(where, value, ("rating",))
        rating = _entries(
            f"{where}.rating", entry["rating"], ("days_past_due", "asset_class"), ("days_past_due", "asset_class")
        )
        days = _name(f"{where}.rating.days_past_due", rating["days_past_due"])
        return Scalar(name, "string", rating=(days, _name(f"{where}.rating.asset_class", rating["asset_class"])))
    entry = _entries(where, value, ("from", "type", "sentinels"), ("from", "type"))
    source = _name(f"{where}.from", entry["from"])
    if source in FIXED_NAMES:
        raise LayoutError(f"{where}.from: {source!r} is a fixed column of accounts_all, not a source of a scalar")
    kind = str(entry["type"]).strip().lower()
    try:
        spark_type(kind)
    except ValueError as e:
        raise LayoutError(f"{where}.type: {e}") from None
    sentinels = entry.get("sentinels", [])
    if not isinstance(sentinels, list):
        raise LayoutError(f"{where}.sentinels: expected a list of numbers, got {sentinels!r}")
    numeric = kind in _NUMERIC or kind.startswith("decimal")
    for v in sentinels:
        integral = isinstance(v, int) and not isinstance(v, bool)
        if not numeric or not (integral or (isinstance(v, float) and kind not in ("int", "bigint"))):
            raise LayoutError(f"{where}.sentinels: {v!r} is not a value of type {kind} (sentinels are numbers)")
    return Scalar(name, kind, source=source, sentinels=tuple(sentinels))


def _check_rating(s: Scalar, by_name: dict[str, Scalar]) -> None:
    """The rating's inputs must be copied scalars: days past due a whole number, the asset class a string."""
    assert s.rating
    days, asset_class = s.rating
    for role, ref, kinds in (("days_past_due", days, ("int", "bigint")), ("asset_class", asset_class, ("string",))):
        target, where = by_name.get(ref), f"scalars.{s.name}.rating.{role}"
        if target is None or target.rating:
            raise LayoutError(f"{where}: {ref!r} is not a scalar copied from accounts_all")
        if target.type not in kinds:
            raise LayoutError(f"{where}: {ref!r} is {target.type}, expected {' or '.join(kinds)}")


def parse_layout(data: object, origin: str = "layout") -> Layout:
    """A layout from its mapping (a parsed YAML file), every entry checked; LayoutError names the first wrong one."""
    try:
        return _parse(data)
    except LayoutError as e:
        raise LayoutError(f"{origin}: {e}") from None


def _parse(data: object) -> Layout:
    top = _entries("layout", data, ("history_length", "scalars", "histories", "grid"), ("scalars",))
    n = top.get("history_length", 36)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_HISTORY_LENGTH:
        raise LayoutError(f"history_length: {n!r} must be a whole number from 1 to {MAX_HISTORY_LENGTH}")
    scalars_in = top["scalars"]
    if not isinstance(scalars_in, Mapping) or not scalars_in:
        raise LayoutError(f"scalars: expected a mapping of at least one column, got {scalars_in!r}")
    names: dict[str, str] = {}  # column name -> where it was defined

    def claim(name: str, where: str) -> None:
        if name in FIXED_NAMES:
            raise LayoutError(f"{where}: {name!r} is a fixed column (docs/spec.md §8), not listed in a layout")
        if name in names:
            raise LayoutError(f"{where}: the name {name!r} is used twice (also {names[name]})")
        names[name] = where

    scalars = []
    for name, value in scalars_in.items():
        claim(_name("scalars", name), f"scalars.{name}")
        scalars.append(_scalar(name, value))
    by_name = {s.name: s for s in scalars}
    sources: dict[str, str] = {}
    for s in scalars:
        if s.source and sources.setdefault(s.source, s.type) != s.type:
            raise LayoutError(f"scalars.{s.name}.from: {s.source!r} is read as {sources[s.source]} by another scalar")
        if s.rating:
            _check_rating(s, by_name)
    histories_in = top.get("histories") or {}
    if not isinstance(histories_in, Mapping):
        raise LayoutError(f"histories: expected a mapping of history column to scalar, got {histories_in!r}")
    histories = []
    for column, scalar in histories_in.items():
        claim(_name("histories", column), f"histories.{column}")
        if scalar not in by_name:
            raise LayoutError(f"histories.{column}: {scalar!r} is not a scalar of the layout")
        histories.append((column, scalar))
    grid = None
    if top.get("grid") is not None:
        entry = _entries("grid", top["grid"], ("column", "history", "missing"), ("column", "history"))
        claim(_name("grid.column", entry["column"]), "grid.column")
        history = entry["history"]
        if history not in dict(histories):
            raise LayoutError(f"grid.history: {history!r} is not a history of the layout")
        if by_name[dict(histories)[history]].type != "string":
            raise LayoutError(f"grid.history: {history!r} holds {by_name[dict(histories)[history]].type}, not string")
        missing = entry.get("missing", "?")
        if not isinstance(missing, str) or len(missing) != 1:
            raise LayoutError(f"grid.missing: {missing!r} must be one character")
        grid = Grid(entry["column"], history, missing)
    return Layout(n, tuple(scalars), tuple(histories), grid)


def load_layout(path: str | os.PathLike[str]) -> Layout:
    """The layout in a YAML (or JSON) file."""
    origin = f"layout file {path}"
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise LayoutError(f"{origin}: cannot be read ({e.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except LayoutError as e:
        raise LayoutError(f"{origin}: {e}") from None
    except yaml.YAMLError as e:
        raise LayoutError(f"{origin}: not YAML: {e}") from None
    return _with_origin(parse_layout(data, origin), str(path))


def _with_origin(layout: Layout, origin: str) -> Layout:
    return Layout(layout.history_length, layout.scalars, layout.histories, layout.grid, origin)


_AMOUNT_SENTINELS = [-2147483647, -214748364, -21474836, -1]
DEFAULT_LAYOUT = parse_layout(
    {
        "history_length": 36,
        "scalars": {
            "credit_limit_am": {"from": "acct_credit_ext_am", "type": "int", "sentinels": _AMOUNT_SENTINELS},
            "balance_am": {"from": "acct_bal_am", "type": "int", "sentinels": _AMOUNT_SENTINELS},
            "past_due_am": {"from": "past_due_am", "type": "int", "sentinels": _AMOUNT_SENTINELS},
            "actual_payment_am": {"from": "actual_pymt_am", "type": "int", "sentinels": _AMOUNT_SENTINELS},
            "days_past_due": {"from": "days_past_due_ct_4in", "type": "int"},
            "asset_class_cd": {"from": "asset_class_cd_4in", "type": "string"},
            "payment_rating_cd": {"rating": {"days_past_due": "days_past_due", "asset_class": "asset_class_cd"}},
            "acct_stat_cd": {"from": "acct_stat_cd", "type": "string"},
        },
        "histories": {
            "actual_payment_am_history": "actual_payment_am",
            "balance_am_history": "balance_am",
            "credit_limit_am_history": "credit_limit_am",
            "past_due_am_history": "past_due_am",
            "payment_rating_cd_history": "payment_rating_cd",
            "days_past_due_history": "days_past_due",
            "asset_class_cd_4in_history": "asset_class_cd",
        },
        "grid": {"column": "payment_history_grid", "history": "payment_rating_cd_history", "missing": "?"},
    },
    "the default layout (docs/spec.md §2)",
)


def layout_from_env() -> Layout:
    """The layout of `BACKFILL_LAYOUT`, or the default when it is unset or empty."""
    path = os.environ.get(ENV, "").strip()
    return load_layout(path) if path else DEFAULT_LAYOUT
