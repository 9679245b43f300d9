"""`verify` (docs/spec.md §6): the invariant of §4 as internal consistency of the stored tables, in one pass.

No records are read. `summary` is read once and shuffled once, by account: a window ordered by month
gives every row position 0 and the delete flag of the account's row of each of the N − 1 months before
it (`_frame`: one window frame per offset, evaluated in one pass of the window; at small about a
third faster than collecting the N months into a list and searching it per position), which is
what each history array must hold. Only a row whose array differs from that is looked at position
by position (interpreted lambdas, so a clean table does not pay for them), to name the kind of
disagreement. The row rules of `contracts.models` (lengths, grid, rating, sentinels) are evaluated
on the rows before the shuffle, so the shuffle carries booleans for them. `latest_summary` is joined
to the one summary row per account that §2.3 picks, which the same window marks (`_with_latest`).

Every rule is counted in ONE aggregation; only when one is broken does a second aggregation find
example keys of the broken rules (as `contracts.validation` does).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.models import Rule, row_rules
from backfill_assets.contracts.tables import KEY
from backfill_assets.contracts.validation import EXAMPLES, Problem, Report, key_order
from backfill_assets.contracts.values import is_deleted
from backfill_assets.transforms.months import month_index

A, M = KEY
TABLES = ("summary", "latest_summary")

# the kinds of a history position that breaks §4.2, in the order a row is reported under them
DISAGREES = "position i must equal position 0 of the active row of month m - i"
MISSING = "position i must not be NULL where the active row of month m - i has a value"
TOMBSTONE = "position i must be NULL where the row of month m - i is deleted"
NO_ROW = "position i must be NULL where month m - i has no row (after the account's first row)"
OWN_VALUE = "position 0 must equal the row's own {scalar}"
DUPLICATE_KEY = "key must be unique"
LATEST_DUPLICATE = "one row per account"
LATEST_MISSING = "an account with summary rows must have a latest_summary row"
LATEST_ORPHAN = "an account without summary rows must have no latest_summary row"
LATEST_NOT_PICKED = "must be the account's newest active summary row, else its newest deleted row (docs/spec.md §2.3)"
LATEST_DIFFERS = "must equal its summary row"

_ACTIVE, _IDX, _FIRST, _ENTRIES, _PICK, _DUPS = "_active", "_idx", "_first", "_entries", "_pick", "_dups"
_S_KEY, _L_KEY, _L_ROW, _L_RANK, _L_ROWS = "_s_key", "_l_key", "_l_row", "_l_rank", "_l_rows"


@dataclass(frozen=True)
class Flag:
    """One rule of the audit: the table and column it is about, its text, when a row breaks it, and its key."""

    table: str
    column: str
    rule: str
    violated: Column
    key: str = _S_KEY

    @property
    def name(self) -> str:
        return f"{self.column}: {self.rule}"


def _row_flags(table: str, frame: DataFrame, prefix: str, layout: Layout) -> tuple[DataFrame, list[Flag]]:
    """The row rules of `contracts.models` as boolean columns of `frame`, evaluated before any shuffle."""
    rules = row_rules(table, layout)
    if table == "summary":  # §4.2: position 0 is the month's own value
        active = ~is_deleted(F.col("soft_del_cd"))
        for h, scalar in layout.histories:
            own = F.col(h)[0]  # NULL-safe (an empty array gives NULL: its length is reported)
            broken = active & (F.size(h) == layout.history_length) & ~own.eqNullSafe(F.col(scalar))
            rules.append(Rule(h, OWN_VALUE.format(scalar=scalar), broken))
    names = [f"{prefix}{i}" for i in range(len(rules))]
    frame = frame.select(
        "*", *[F.coalesce(r.violated, F.lit(False)).alias(n) for r, n in zip(rules, names, strict=True)]
    )
    key = _S_KEY if table == "summary" else _L_KEY
    return frame, [Flag(table, r.column, r.rule, F.col(n), key) for r, n in zip(rules, names, strict=True)]


def _frame(summary: DataFrame, layout: Layout) -> tuple[DataFrame, list[Flag]]:
    """summary rows after the one shuffle by account, each with `_entries`: at position i, month m - i's
    position-0 values and delete flag (NULL: no row)."""
    active = ~is_deleted(F.col("soft_del_cd"))
    rows = summary.select(*layout.summary_columns, month_index(M).alias(_IDX), active.alias(_ACTIVE))
    rows, flags = _row_flags("summary", rows, "_rs", layout)
    by_month = Window.partitionBy(A).orderBy(_IDX)
    position0 = F.struct(
        F.col(_IDX).alias("idx"),
        F.col(_ACTIVE).alias("active"),
        *[F.when(F.col(_ACTIVE), F.col(h)[0]).alias(h) for h in layout.history_sources],
    )
    whole = by_month.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    framed = rows.select(
        "*",
        # position i: the row of month m - i (NULL: none), one frame per offset, all in one pass of the window
        F.array(*[F.first(position0).over(by_month.rangeBetween(-i, -i)) for i in range(layout.history_length)]).alias(
            _ENTRIES
        ),
        F.min(_IDX).over(whole).alias(_FIRST),
        (F.count(F.lit(1)).over(by_month.rangeBetween(0, 0)) > 1).alias(_DUPS),
        (F.struct(_ACTIVE, _IDX) == F.max(F.struct(_ACTIVE, _IDX)).over(whole)).alias(_PICK),
        F.struct(F.col(A).alias("a"), F.col(M).alias("m")).alias(_S_KEY),
    )
    flags.append(Flag("summary", ", ".join(KEY), DUPLICATE_KEY, F.col(_DUPS)))
    return framed, flags


def _history_flags(h: str, n: int) -> list[Flag]:
    """The four ways a history array of an active row can break §4.2, each judged only where §6 judges.

    Positions before the account's first row are not judged (history from an older system).
    """
    judged = F.least(F.lit(n), F.col(_IDX) - F.col(_FIRST) + 1)
    entries = F.col(_ENTRIES)
    expected = entries.getField(h)
    actual = F.col(h)
    differs = (
        F.col(_ACTIVE) & (F.size(actual) == n) & ~F.slice(actual, 1, judged).eqNullSafe(F.slice(expected, 1, judged))
    )

    def at(kind: str) -> Column:
        """Some judged position of this kind (interpreted: only evaluated on a row whose array differs)."""

        def bad(i: Column) -> Column:
            entry, value, want = F.get(entries, i), F.get(actual, i), F.get(expected, i)
            if kind == DISAGREES:
                return entry["active"] & value.isNotNull() & ~value.eqNullSafe(want)
            if kind == MISSING:
                return entry["active"] & value.isNull() & want.isNotNull()
            if kind == TOMBSTONE:
                return entry.isNotNull() & ~entry["active"] & value.isNotNull()
            return entry.isNull() & value.isNotNull()

        return F.when(differs, F.exists(F.sequence(F.lit(0), judged - 1), bad)).otherwise(F.lit(False))

    return [Flag("summary", h, kind, at(kind)) for kind in (DISAGREES, MISSING, TOMBSTONE, NO_ROW)]


def _with_latest(judged: DataFrame, latest: DataFrame, layout: Layout) -> tuple[DataFrame, list[Flag]]:
    """Every summary row, the row §2.3 picks joined with its account's latest_summary row (full outer)."""
    by_account = Window.partitionBy(A)
    columns = layout.summary_columns
    rows, flags = _row_flags("latest_summary", latest, "_rl", layout)
    rows = rows.select(
        F.col(A).alias("_la"),
        F.struct(F.col(A).alias("a"), F.col(M).alias("m")).alias(_L_KEY),
        F.struct(*columns).alias(_L_ROW),
        F.row_number().over(by_account.orderBy(F.col(M).desc())).alias(_L_RANK),
        F.count(F.lit(1)).over(by_account).alias(_L_ROWS),
        *[f.violated for f in flags],
    )
    on = (judged[A] == rows["_la"]) & judged[_PICK] & (rows[_L_RANK] == 1)
    joined = judged.join(rows, on, "full")
    has_summary, has_latest = F.col(_S_KEY).isNotNull(), F.col(_L_KEY).isNotNull()
    matched = has_summary & has_latest
    same_month = F.col(f"{_L_KEY}.m") == F.col(f"{_S_KEY}.m")
    flags += [
        Flag("latest_summary", A, LATEST_DUPLICATE, has_latest & (F.col(_L_ROWS) > 1), _L_KEY),
        Flag("latest_summary", A, LATEST_MISSING, has_summary & F.col(_PICK) & ~has_latest),
        Flag("latest_summary", A, LATEST_ORPHAN, has_latest & ~has_summary & (F.col(_L_RANK) == 1), _L_KEY),
        Flag("latest_summary", M, LATEST_NOT_PICKED, matched & ~same_month, _L_KEY),
        Flag(
            "latest_summary",
            "*",
            LATEST_DIFFERS,
            matched & same_month & ~F.col(_L_ROW).eqNullSafe(F.struct(*columns)),
            _L_KEY,
        ),
    ]
    return joined, flags


def audit(summary: DataFrame, layout: Layout, latest: DataFrame | None = None) -> tuple[DataFrame, list[Flag]]:
    """The audit as a frame of flags (lazy): summary's rules, and latest_summary's when `latest` is given."""
    judged, flags = _frame(summary, layout)
    for h in layout.history_sources:
        flags += _history_flags(h, layout.history_length)
    if latest is None:
        return judged, flags
    joined, latest_flags = _with_latest(judged, latest, layout)
    return joined, flags + latest_flags


def _counts(frame: DataFrame, flags: list[Flag]) -> tuple[dict[str, int], list[int]]:
    """Rows per table and rows breaking each flag, in one aggregation."""
    tables = {t: F.count(F.col(key)) for t, key in (("summary", _S_KEY), ("latest_summary", _L_KEY))}
    present = [t for t in tables if t in {f.table for f in flags}]
    row = frame.agg(
        *[tables[t].alias(t) for t in present],
        *[F.count(F.when(f.violated, True)).alias(f"_c{i}") for i, f in enumerate(flags)],
    ).first()
    assert row is not None
    return {t: int(row[t]) for t in present}, [int(row[f"_c{i}"]) for i in range(len(flags))]


def _examples(frame: DataFrame, flags: dict[int, Flag]) -> dict[int, list[tuple[int | None, str | None]]]:
    """Up to three keys of each flag: the smallest and greatest per month, of which the smallest three."""
    shard = F.coalesce(*[F.col(f"{key}.m") for key in (_S_KEY, _L_KEY) if key in frame.columns])
    ends = [
        agg(F.when(f.violated, F.col(f.key))).alias(f"_{name}{i}")
        for i, f in flags.items()
        for agg, name in ((F.min, "lo"), (F.max, "hi"))
    ]
    rows = frame.groupBy(shard.alias("_shard")).agg(*ends).collect()
    out = {}
    for i in flags:
        keys = {(k["a"], k["m"]) for r in rows for k in (r[f"_lo{i}"], r[f"_hi{i}"]) if k is not None}
        out[i] = sorted(keys, key=key_order)[:EXAMPLES]
    return out


def verify(
    summary: DataFrame, latest: DataFrame | None, layout: Layout, tables: tuple[str, ...] = TABLES
) -> list[Report]:
    """One report per table of `tables` (summary, latest_summary), in that order.

    `latest` may be None only when latest_summary is not judged. A clean audit is one Spark job.
    """
    if "latest_summary" in tables and latest is None:
        raise ValueError("verifying latest_summary needs the latest_summary table")
    frame, flags = audit(summary, layout, latest if "latest_summary" in tables else None)
    flags = [f for f in flags if f.table in tables]
    rows, counts = _counts(frame, flags)
    broken = {i: f for i, f in enumerate(flags) if counts[i]}
    examples = _examples(frame, broken) if broken else {}
    reports = []
    for table in tables:
        problems = [
            Problem(table, f.column, f.rule, counts[i], next(iter(examples[i]), None), examples=tuple(examples[i]))
            for i, f in broken.items()
            if f.table == table
        ]
        reports.append(Report(table, rows[table], problems))
    return reports
