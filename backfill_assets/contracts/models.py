"""The data contracts: a pandera (pyspark) model per table and asset output, and the row rules.

The models check structure (columns and Spark types, nullability, month format, unique keys) in
pandera's own terms; the row rules are the contract pandera cannot count: each is a condition that
is true on a violating row, with its severity, so that one Spark aggregation can count every rule
per month and keep example keys (see `validation.py`). Both are shared by the asset checks, the
CLI import and the tests.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import pandera.pyspark as pa
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.tables import CASES, KEY, MONTH_PATTERN
from backfill_assets.contracts.values import grid, is_deleted, payment_rating

A, M = KEY
MONTH_COLUMNS = ("rpt_as_of_mo", "latest_mo", "own_row", "base_mo", "target_mo")

Severity = Literal["ERROR", "WARN"]


def _model(name: str, schema: StructType, unique: tuple[str, ...] | None = None) -> type[pa.DataFrameModel]:
    """A pandera model of `schema`: its columns, types and nullability, months as YYYY-MM, unique keys."""
    annotations = {f.name: f.dataType for f in schema.fields}
    fields = {
        f.name: pa.Field(nullable=f.nullable, str_matches=MONTH_PATTERN if f.name in MONTH_COLUMNS else None)
        for f in schema.fields
    }
    config = type("Config", (), {"name": name, "unique": list(unique) if unique else None})
    namespace = {"__annotations__": annotations, "__module__": __name__, "Config": config, **fields}
    return type(name, (pa.DataFrameModel,), namespace)


# what a run reads of the summary rows it rewrites: every column but the histories (docs/spec.md §4.2)
SCALAR_PROJECTION = "summary_scalars"


@functools.cache
def models(layout: Layout) -> Mapping[str, type[pa.DataFrameModel]]:
    """A pandera model per table and asset output of the layout (built once per layout)."""
    out = {name: _model(name, contract.schema, contract.unique) for name, contract in layout.contracts.items()}
    scalars = StructType(
        [f for f in layout.summary if f.name in ("cons_acct_key", "rpt_as_of_mo", "base_ts", *layout.scalar_names)]
    )
    out[SCALAR_PROJECTION] = _model(SCALAR_PROJECTION, scalars, KEY)
    return out


# the unique key of each table (the same under every layout)
UNIQUE: dict[str, tuple[str, ...]] = {
    "summary": KEY,
    "latest_summary": KEY[:1],
    "classified_accounts": KEY,
    "joined_windows": KEY,
    SCALAR_PROJECTION: KEY,
}


@dataclass(frozen=True)
class Rule:
    """One row rule of a table: `violated` is true on a row that breaks it.

    `reject` names the docs/spec.md §7 rule under which a run rejects a source record that breaks it (the
    run goes on without the record); None for a rule whose violation is not the lender's record.
    """

    column: str
    rule: str
    violated: Column
    severity: Severity = "ERROR"
    reject: str | None = None


@dataclass(frozen=True)
class Bounds:
    """What the row rules need to know beyond the row: the clock tolerance and the partitions."""

    latest_allowed_base_ts: dt.datetime | None = None
    first_month: str | None = None
    last_month: str | None = None


def _key_rules() -> list[Rule]:
    month = F.col(M)
    return [
        Rule(A, "must not be NULL", F.col(A).isNull()),
        Rule(M, "must not be NULL", month.isNull()),
        Rule(M, "must be a month 'YYYY-MM' with month 01-12", month.isNotNull() & ~month.rlike(MONTH_PATTERN)),
    ]


def reject_rules(bounds: Bounds) -> list[Rule]:
    """The rules of docs/spec.md §7 a source record must keep, in the order a record is judged.

    Each holds only on records that keep every earlier one, so that a record breaking several counts
    once, under the first: the counts of the source check are then the rows of the rejects table.
    """
    month, base_ts = F.col(M), F.col("base_ts")
    null_key, null_month, bad_month = _key_rules()
    rules = [
        replace(null_key, reject="null_key"),
        replace(null_month, reject="bad_month"),
        replace(bad_month, reject="bad_month"),
    ]
    if bounds.first_month is not None and bounds.last_month is not None:
        first, last = bounds.first_month, bounds.last_month
        rule = f"must not be before the first partition {first}"
        rules.append(Rule(M, rule, month < F.lit(first), reject="month_before_partitions"))
        # clamped to the last partition: a base_ts ahead of the clock (within the tolerance) must not
        # bring a month that is no partition yet, which no run could apply
        delivered = F.least(F.date_format(base_ts, "yyyy-MM"), F.lit(last))
        rule = f"must not be after the month of its base_ts (nor after the last partition {last})"
        rules.append(Rule(M, rule, month > delivered, reject="month_after_delivery"))
    rules.append(Rule("base_ts", "must not be NULL", base_ts.isNull(), reject="null_base_ts"))
    if bounds.latest_allowed_base_ts is not None:
        rule = f"must not be after {bounds.latest_allowed_base_ts:%Y-%m-%d %H:%M} UTC"
        rules.append(Rule("base_ts", rule, base_ts > F.lit(bounds.latest_allowed_base_ts), reject="future_base_ts"))
    earlier = F.lit(False)
    for i, r in enumerate(rules):
        broken = F.coalesce(r.violated, F.lit(False))
        rules[i], earlier = replace(r, violated=broken & ~earlier), earlier | broken
    return rules


def rejections(bounds: Bounds) -> list[tuple[str, Column, str]]:
    """(rule name, violated, message) of each reject rule in order, for tagging records (`transforms.rejects`)."""
    return [(r.reject or "", r.violated, f"accounts_all: column {r.column}: {r.rule}") for r in reject_rules(bounds)]


def _source_rules(bounds: Bounds, layout: Layout) -> list[Rule]:
    rules = reject_rules(bounds)
    kept = ~functools.reduce(operator.or_, [r.violated for r in rules])
    for s in layout.scalars:
        if s.rating:
            days, asset_class = (F.col(layout.sources[c]) for c in s.rating)
            undetermined = (days < 0) & payment_rating(days, asset_class).isNull()
            rule = "should give a payment rating when days past due < 0"
            rules.append(Rule(layout.sources[s.rating[1]], rule, kept & undetermined, "WARN"))
    return rules


def _has_sentinel(column: str, sentinels: tuple[int | float, ...], is_history: bool) -> Column:
    if not is_history:
        return F.col(column).isin(*sentinels)
    # compiled, unlike an `exists` lambda; NULL (no sentinel, some NULL element) counts as none
    return F.arrays_overlap(F.col(column), F.array(*[F.lit(v) for v in sentinels]))


def _summary_rules(layout: Layout, histories: bool = True) -> list[Rule]:
    """Rules of a summary row (without `histories`: of its scalars alone).

    Content is only specified on active rows (a deleted row keeps whatever it had).
    """
    active = ~is_deleted(F.col("soft_del_cd"))
    rules = _key_rules()
    n, g = layout.history_length, layout.grid
    columns = [*layout.history_sources, *([g.column] if g else [])] if histories else []
    for column in columns:
        value, is_grid = F.col(column), g is not None and column == g.column
        length = F.length(value) if is_grid else F.size(value)
        unit = "characters" if is_grid else "elements"
        bad = F.when(value.isNull(), active).otherwise(length != n)
        rules.append(Rule(column, f"must hold {n} {unit} (NULL only on a deleted row)", bad))
    if histories and g is not None:
        rendered = grid(F.col(g.history), g.missing)
        differs = active & (F.length(g.column) == n) & (F.col(g.column) != rendered)  # wrong lengths: above
        rules.append(Rule(g.column, f"must equal the rendering of {g.history}", differs))
    for s in layout.scalars:
        if s.rating:
            days, asset_class = s.rating
            rating = payment_rating(F.col(days), F.col(asset_class))
            rule = f"must agree with {days} / {asset_class}"
            rules.append(Rule(s.name, rule, active & ~(F.col(s.name).eqNullSafe(rating))))
    for column, sentinels in layout.sentinels.items():
        is_history = column in layout.history_sources
        if is_history and not histories:
            continue
        sentinel = F.coalesce(_has_sentinel(column, sentinels, is_history), F.lit(False))
        rules.append(Rule(column, "must not hold a sentinel amount", active & sentinel))
    return rules


def _intermediate_rules(table: str) -> list[Rule]:
    rules = _key_rules()
    if table == "classified_accounts":
        rules.append(Rule("case_type", f"must be one of {', '.join(CASES)}", ~F.col("case_type").isin(*CASES)))
        rules.append(Rule("base_ts", "must not be NULL", F.col("base_ts").isNull()))
    return rules


def row_rules(table: str, layout: Layout, bounds: Bounds | None = None) -> list[Rule]:
    """The row rules of a table or asset output (`models(layout)` names)."""
    bounds = bounds or Bounds()
    if table not in models(layout):
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(models(layout))}")
    if table == "accounts_all":
        return _source_rules(bounds, layout)
    if table in ("summary", "latest_summary", SCALAR_PROJECTION):
        return _summary_rules(layout, histories=table != SCALAR_PROJECTION)
    return _intermediate_rules(table)
