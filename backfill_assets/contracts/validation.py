"""Check a DataFrame against the table contracts of docs/spec.md §2 before anything is written.

Schema problems (missing columns, types that do not fit) are found from the schema alone; data
problems (NULL keys, malformed months, history arrays of the wrong length, duplicate keys) are
counted in ONE Spark aggregation, which also finds the smallest and greatest offending keys of each
rule, so that a refusal names rows the user can look up (for latest_summary, a second aggregation
finds them, only when a rule is broken).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from pandera.config import ValidationDepth, config_context
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.types import (
    StructField,
    StructType,
)

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.models import SCALAR_PROJECTION, UNIQUE, Bounds, Rule, Severity, models, row_rules
from backfill_assets.contracts.tables import KEY
from backfill_assets.contracts.values import is_deleted

A, M = "cons_acct_key", "rpt_as_of_mo"


@dataclass(frozen=True)
class Problem:
    """One violated rule: where, what, how many rows (in all and per month), and the smallest offending keys."""

    table: str
    column: str
    rule: str
    rows: int | None = None
    example: tuple[int | None, str | None] | None = None
    unit: str = "row"
    severity: Severity = "ERROR"
    by_month: tuple[tuple[str, int], ...] = ()
    examples: tuple[tuple[int | None, str | None], ...] = ()
    reject: str | None = None  # the docs/spec.md §7 rule under which a run rejects these rows (`models.Rule`)

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


PanderaDepth = Literal["SCHEMA_ONLY", "DATA_ONLY", "SCHEMA_AND_DATA"]
EXAMPLES = 3


@dataclass(frozen=True)
class Report:
    """The outcome of checking one frame: rows read, problems found, and pandera's own error report."""

    table: str
    rows_read: int
    problems: list[Problem]
    pandera_errors: dict[str, Any] = field(default_factory=dict)
    rows_by_month: dict[str, int] = field(default_factory=dict)
    tallies: dict[str, dict[str, int]] = field(default_factory=dict)  # rows per month of each `check_frame` tally

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "ERROR"]

    @property
    def passed(self) -> bool:
        return not self.errors

    @property
    def rejected(self) -> dict[str, int]:
        """Rows per rule of docs/spec.md §7 a run rejects them under (each under one rule: `models.reject_rules`)."""
        out: dict[str, int] = {}
        for p in self.problems:
            if p.reject:
                out[p.reject] = out.get(p.reject, 0) + (p.rows or 0)
        return out


def _key(row: Row | None) -> tuple[int | None, str | None] | None:
    return None if row is None else (row["a"], row["m"])


def key_order(key: tuple[int | None, str | None]) -> tuple[bool, int, bool, str]:
    """Spark's ascending order of keys (NULL first), for picking the smallest examples."""
    return (key[0] is not None, key[0] or 0, key[1] is not None, key[1] or "")


def _month_keyed(table: str) -> bool:
    """Whether each row `_aggregate` groups by month has that month in its key (a table with no unique key, or
    one unique per account and month): then its accounts alone order its keys."""
    return UNIQUE.get(table) in (None, KEY)


def _aggregate(frame: DataFrame, table: str, flags: list[Column], examples: set[int] | None) -> list[Row]:
    """Rows, duplicated keys and each rule's violations per month; with the smallest and greatest
    offending key of the rules in `examples` (and of duplicated keys) when it is given.

    A table with a unique key is grouped by it first, to count duplicated keys in the same job (the
    shuffle carries only keys and counters, never the wide rows). The examples of a month-keyed table
    are the least and greatest offending accounts of each month (`_account_ends`): a hash aggregation,
    as cheap as the counts. Those of another table (latest_summary, unique per account) are struct
    minima, which Spark aggregates by sorting.
    """
    wanted = sorted(examples or set())
    unique = UNIQUE.get(table)
    structs = not _month_keyed(table) and examples is not None
    key = F.struct(F.col(A).alias("a"), F.col(M).alias("m"))
    if unique is None:
        grouped = frame.select(
            F.col(A),
            F.col(M).alias("_m"),
            F.lit(1).alias("_n"),
            *[F.when(f, 1).otherwise(0).alias(f"_c{i}") for i, f in enumerate(flags)],
        )
        dup = F.lit(False)
    else:
        grouped = frame.groupBy(*unique).agg(
            F.min(M).alias("_m"),
            F.count(F.lit(1)).alias("_n"),
            *([F.min(key).alias("_k")] if structs else []),
            *[F.count(F.when(f, True)).alias(f"_c{i}") for i, f in enumerate(flags)],
            *([F.min(F.when(flags[i], key)).alias(f"_e{i}") for i in wanted] if structs else []),
        )
        dup = F.col("_n") > 1

    def ends(offends: Column, struct_keys: str, lo: str, hi: str) -> list[Column]:
        if not structs:
            return _account_ends(offends, lo, hi)
        keys = F.when(offends, F.col(struct_keys))
        return [F.min(keys).alias(lo), F.max(keys).alias(hi)]

    aggs = [F.sum("_n").alias("rows"), F.count(F.when(dup, True)).alias("dup")]
    if examples is not None and unique is not None:
        aggs += ends(dup, "_k", "dup_lo", "dup_hi")
    aggs += [F.sum(f"_c{i}").alias(f"c{i}") for i in range(len(flags))]
    for i in wanted:
        aggs += ends(F.col(f"_c{i}") > 0, f"_e{i}", f"lo{i}", f"hi{i}")
    return sorted(grouped.groupBy("_m").agg(*aggs).collect(), key=lambda r: (r["_m"] is not None, r["_m"] or ""))


def _account_ends(offends: Column, lo: str, hi: str) -> list[Column]:
    """The least and greatest key of a month's offending rows, as (a, m) structs; NULL where none offends.

    Every key of the group has its month, so its accounts order them; a NULL account, which Spark
    orders first, is the least (`min` skips NULLs).
    """
    accounts = F.when(offends, F.col(A))
    null_account = F.max(offends & F.col(A).isNull())

    def key(account: Column) -> Column:
        return F.when(F.max(offends), F.struct(account.alias("a"), F.col("_m").alias("m")))

    return [key(F.when(~null_account, F.min(accounts))).alias(lo), key(F.max(accounts)).alias(hi)]


def _count(
    frame: DataFrame, table: str, rules: list[Rule], tallies: dict[str, Column]
) -> tuple[dict[str, int], list[Problem], dict[str, dict[str, int]]]:
    """Rows per month, every rule and every tally counted per month, with example keys, in ONE job.

    Except for latest_summary (not `_month_keyed`): there a broken rule (or unique key) costs a second
    job that finds the smallest and greatest offending keys of those rules, struct minima, which Spark
    aggregates by sorting, so that a clean check, the common case, does not pay for them.
    """
    flags = [F.coalesce(c, F.lit(False)) for c in [*(r.violated for r in rules), *tallies.values()]]
    every_rule = set(range(len(rules))) if _month_keyed(table) else None  # examples at a counter's cost
    months = _aggregate(frame, table, flags, every_rule)
    counted = {
        name: {m["_m"] or "NULL": int(m[f"c{i}"]) for m in months if m[f"c{i}"]}
        for i, name in enumerate(tallies, start=len(rules))
    }
    broken = {i for i in range(len(rules)) if any(m[f"c{i}"] for m in months)}
    if every_rule is None and (broken or any(m["dup"] for m in months)):
        months = _aggregate(frame, table, flags, broken)
    found = [(r.column, r.rule, r.severity, f"c{i}", f"lo{i}", f"hi{i}", "row", r.reject) for i, r in enumerate(rules)]
    unique = UNIQUE.get(table)
    if unique is not None:
        key = ", ".join(unique)
        found.append((key, "key must be unique", "ERROR", "dup", "dup_lo", "dup_hi", "duplicated key", None))
    problems = []
    for column, rule, severity, count, lo, hi, unit, reject in found:
        by_month = tuple((m["_m"] or "NULL", int(m[count] or 0)) for m in months if m[count])
        if not by_month:
            continue
        ends = [m.asDict().get(end) for m in months for end in (lo, hi)]  # absent if a rule broke between the jobs
        examples = tuple(sorted({k for k in map(_key, ends) if k is not None}, key=key_order)[:EXAMPLES])
        total = sum(n for _, n in by_month)
        example = examples[0] if examples else None
        problems.append(Problem(table, column, rule, total, example, unit, severity, by_month, examples, reject))
    return {m["_m"] or "NULL": int(m["rows"] or 0) for m in months}, problems, counted


def _pandera(frame: DataFrame, table: str, depth: PanderaDepth, layout: Layout) -> dict[str, Any]:
    """pandera's error report of `frame` against the table's model (JSON-safe; empty when clean)."""
    if depth == "SCHEMA_ONLY":
        # structure only: an empty frame of the schema, fields marked non-NULL so that pandera skips
        # its NULL probes (Spark jobs); NULLs are counted by the row rules
        schema = StructType([StructField(f.name, f.dataType, False) for f in frame.schema.fields])
        frame = frame.sparkSession.createDataFrame([], schema)
    with config_context(validation_depth=ValidationDepth(depth)):
        validated: Any = models(layout)[table].validate(frame)  # type: ignore[arg-type]
        errors = validated.pandera.errors
    return cast(dict[str, Any], json.loads(json.dumps(errors, default=str)))


def _pandera_problems(table: str, errors: dict[str, Any]) -> list[Problem]:
    return [
        Problem(table, str(e.get("column")), f"{e.get('check')}: {e.get('error')}")
        for by_reason in errors.values()
        for items in by_reason.values()
        for e in items
    ]


def check_frame(
    frame: DataFrame,
    table: str,
    layout: Layout,
    bounds: Bounds | None = None,
    depth: PanderaDepth = "SCHEMA_ONLY",
    tallies: dict[str, Column] | None = None,
) -> Report:
    """Check `frame` as content of `table` (a `models(layout)` name): pandera's model, then the row rules.

    `tallies`: conditions whose rows the same job counts per month (`Report.tallies`), for metadata.

    A structural error (a column missing or of another type) stops there: the row rules need the columns.
    Summary rows without their histories (what a run reads of the rows it rewrites) are checked by
    the model and rules of those columns, under the table's name.
    """
    read_without_histories = not any(h in frame.columns for h in layout.history_sources)
    model = SCALAR_PROJECTION if table == "summary" and read_without_histories else table
    errors = _pandera(frame, model, depth, layout)
    if "SCHEMA" in errors:
        return Report(table, 0, _named(_pandera_problems(model, errors), table), errors)
    by_month, problems, counted = _count(frame, model, row_rules(model, layout, bounds), tallies or {})
    found = _named(problems + _pandera_problems(model, errors), table)
    return Report(table, sum(by_month.values()), found, errors, by_month, counted)


def _named(problems: list[Problem], table: str) -> list[Problem]:
    return [p if p.table == table else replace(p, table=table) for p in problems]


def check_structure(frame: DataFrame, table: str, layout: Layout) -> Report:
    """Columns and types of `frame` against the model of `table`, from the schema alone (no Spark job)."""
    errors = _pandera(frame, table, "SCHEMA_ONLY", layout)
    return Report(table, 0, _pandera_problems(table, errors), errors)


def column_mismatches(table: str, stored: StructType, layout: StructType, extra_allowed: bool = False) -> list[Problem]:
    """The columns of a stored table that do not match the layout's (docs/spec.md §8): missing, of another
    type, or (unless `extra_allowed`, as in accounts_all) not in the layout. From the schemas alone."""
    have = {f.name: f.dataType.simpleString() for f in stored.fields}
    problems = []
    for f in layout.fields:
        want = f.dataType.simpleString()
        if f.name not in have:
            problems.append(Problem(table, f.name, f"the layout has this {want} column, the stored table has not"))
        elif have[f.name] != want:
            problems.append(Problem(table, f.name, f"is {have[f.name]} in the stored table, {want} in the layout"))
    if not extra_allowed:
        extra = [name for name in have if name not in layout.fieldNames()]
        problems += [Problem(table, name, "is a column of the stored table that the layout lacks") for name in extra]
    return problems


def latest_disagreements(latest: DataFrame, summary_rows: DataFrame, months: tuple[str, str]) -> Report:
    """latest_summary rows that are not the newest active `summary_rows` row of their account (one job if none).

    Only accounts with an active row within `months` and a latest row not after them are judged:
    the rest lie outside what the caller read. The example names the columns that differ.
    """
    columns = [F.col(c) for c in latest.columns if c in summary_rows.columns]  # without histories: the scalars
    newest = (
        summary_rows.where(~is_deleted(F.col("soft_del_cd")) & F.col(M).between(*months))
        .groupBy(A)
        .agg(F.max_by(F.struct(*columns), F.col(M)).alias("_s"))
    )
    judged = (
        latest.select(A, F.struct(*columns).alias("_l")).join(newest, A).where(F.col("_l.rpt_as_of_mo") <= months[1])
    )
    differs = ~F.col("_l").eqNullSafe(F.col("_s"))
    row = judged.agg(F.count(F.lit(1)).alias("n"), F.count(F.when(differs, True)).alias("bad")).first()
    assert row is not None
    problems = []
    example = judged.where(differs).orderBy(A).first() if row["bad"] else None  # a second job only on a refusal
    if row["bad"] and example is not None:
        got, want = example["_l"].asDict(), example["_s"].asDict()
        column = ", ".join(c for c in got if got[c] != want[c])
        rule = f"must equal the newest active summary row of its account (month {want[M]})"
        problems.append(Problem("latest_summary", column, rule, int(row["bad"]), (got[A], got[M]), "account"))
    return Report("latest_summary", int(row["n"]), problems)


def held_once(branch: DataFrame, keys: DataFrame, files: list[str], table: str) -> Report:
    """How `branch` holds the rows a run wrote at `keys` (distinct): each key once, from one of `files`
    (the data files the run's MERGE added), else a problem naming an example.

    Reads the key and Iceberg's `_file` column only, so no history is decoded: the rows' content is judged
    as the run computed them (`check_frame`), and this shows the branch holds exactly those rows.
    """
    key = keys.columns
    foreign = ~F.col("_file").isin(files) if files else F.lit(True)
    per_key = (
        branch.select(A, M, "_file")
        .join(keys, key, "left_semi")
        .groupBy(*key)
        .agg(F.count(F.lit(1)).alias("n"), F.count(F.when(foreign, True)).alias("foreign"), F.min(M).alias("m"))
    )
    example = F.struct(F.col(A).alias("a"), F.col("m").alias("m"))
    row = per_key.agg(
        F.sum("n").alias("rows"),
        F.count(F.when(F.col("n") > 1, True)).alias("dup"),
        F.min(F.when(F.col("n") > 1, example)).alias("dup_e"),
        F.count(F.when(F.col("foreign") > 0, True)).alias("foreign"),
        F.min(F.when(F.col("foreign") > 0, example)).alias("foreign_e"),
    ).first()
    assert row is not None
    rules = {
        "dup": "key must be unique",
        "foreign": "held by a data file the run's MERGE did not write (a version the run did not compute)",
    }
    problems = [
        Problem(table, ", ".join(key), rule, int(row[found]), _key(row[f"{found}_e"]), "key")
        for found, rule in rules.items()
        if row[found]
    ]
    return Report(table, int(row["rows"] or 0), problems)
