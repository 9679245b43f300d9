"""Realistic synthetic data for demos, tests and benchmarks (SPEC §6 `generate`).

Every value is drawn from a hash of (seed, purpose, account, month, …), so a seed yields the same
data whatever the partitioning, with no Python loop over rows and no driver collect. `history` is
what is already summarised; `late` is the next delivery for some accounts: missing months, corrections
(of the latest month too), NULLs and sentinels overwriting values, deletions, second versions and
months beyond the 36-month reach, all with a `base_ts` greater than every history record's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.tables import ACCOUNTS_ALL, AMOUNT_SENTINELS, DELETE_CODES, HISTORY_LENGTH, SUMMARY
from backfill_assets.transforms.months import MONTH_PATTERN, month_key
from backfill_assets.transforms.rebuild import latest_of, rebuild_summary

A = "cons_acct_key"
DAY = 86_400
GAP_RATE = 0.10
HISTORY_DELAY_DAYS = 20  # history records of a month arrive within this many days after it ends
LATE_SLOTS = 3  # a late account gets 1 … 3 late months
NEGATIVE_DPD_CLASSES = ("1", "01", "S", "2", "B", "03", "L", "05", "X", None)
STATUS_CODES = ("11", "11", "11", "11", "11", "13", "13", "71", "78", "80", "82", "97", "DA")
OTHER_AMOUNTS = ("acct_credit_ext_am", "past_due_am", "actual_pymt_am")


@dataclass(frozen=True)
class GeneratedData:
    """A summarised history, the summary tables built from it, and the late batch that follows."""

    history: DataFrame
    late: DataFrame
    summary: DataFrame
    latest_summary: DataFrame


class _Draw:
    """Uniform numbers and choices from hashes: deterministic for a seed, independent of partitioning."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def u(self, purpose: str, *keys: Column) -> Column:
        """Uniform in [0, 1)."""
        return F.pmod(F.xxhash64(F.lit(self.seed), F.lit(purpose), *keys), F.lit(1 << 53)) / float(1 << 53)

    def int_in(self, purpose: str, low: Column | int, high: Column | int, *keys: Column) -> Column:
        """Uniform integer in [low, high]."""
        lo, hi = _col(low), _col(high)
        return (lo + F.floor(self.u(purpose, *keys) * (hi - lo + 1))).cast("int")

    def choice(self, purpose: str, options: Sequence[str | int | None], *keys: Column) -> Column:
        return F.element_at(F.array(*[F.lit(o) for o in options]), self.int_in(purpose, 1, len(options), *keys))


def _col(value: Column | int) -> Column:
    return F.lit(value) if isinstance(value, int) else value


def _index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _month_start(idx: Column | int) -> Column:
    """Epoch seconds of the first day of month index `idx` (no time zone involved)."""
    i = _col(idx)
    return F.unix_date(F.make_date(F.floor(i / 12).cast("int"), (i % 12 + 1).cast("int"), F.lit(1))).cast("long") * DAY


def conform(df: DataFrame, schema: StructType) -> DataFrame:
    """The columns of `schema`, in its order, cast to its exact types."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema])


# ---------------------------------------------------------------- accounts and their reported months


def _accounts(spark: SparkSession, draw: _Draw, accounts: int, first_mo: int, end_mo: int) -> DataFrame:
    """One row per account with its first and last month: half are old, most are still open."""
    acct = F.col(A)
    first = F.when(draw.u("old", acct) < 0.5, F.lit(first_mo)).otherwise(draw.int_in("first", first_mo, end_mo, acct))
    last = F.when(draw.u("open", acct) < 0.85, F.lit(end_mo)).otherwise(
        draw.int_in("last", F.col("first"), end_mo, acct)
    )
    return (
        spark.range(accounts)
        .select((F.col("id") + 1).alias(A))
        .withColumn("first", first.cast("int"))
        .withColumn("last", last.cast("int"))
    )


def _missing(draw: _Draw, acct: Column, idx: Column) -> Column:
    """About 10% of the months strictly between an account's first and last month are never reported."""
    return (idx > F.col("first")) & (idx < F.col("last")) & (draw.u("gap", acct, idx) < GAP_RATE)


def _values(draw: _Draw, salt: str, acct: Column, *keys: Column) -> dict[str, Column]:
    """The reported values of one record; `keys` (after the account) and `salt` tell versions apart."""

    def u(purpose: str) -> Column:
        return draw.u(f"{purpose}-{salt}", acct, *keys)

    limit = draw.int_in("limit", 1, 200, acct) * 500
    balance = F.floor(limit * u("balance"))
    kind = u("dpd-kind")
    dpd = (
        F.when(kind < 0.85, F.lit(0))
        .when(kind < 0.93, draw.int_in(f"dpd-{salt}", 30, 200, acct, *keys))
        .when(kind < 0.98, F.lit(-1))
    )
    asset_class = F.when(
        (dpd == -1) | (u("class-kind") < 0.2), draw.choice(f"class-{salt}", NEGATIVE_DPD_CLASSES, acct, *keys)
    )
    amounts = {
        "acct_credit_ext_am": limit,
        "acct_bal_am": balance,
        "past_due_am": F.when(dpd > 0, F.floor(balance * 0.1 * u("past-due"))).otherwise(F.lit(0)),
        "actual_pymt_am": F.floor(balance * 0.05 * u("payment")),
    }
    soft_del = u("soft-del")

    def unreported(name: str, value: Column) -> Column:
        """Now and then a sentinel or NULL: "not reported"."""
        p = u(f"unreported-{name}")
        sentinel = draw.choice(f"sentinel-{name}-{salt}", AMOUNT_SENTINELS, acct, *keys)
        return F.when(p < 0.03, sentinel).when(p < 0.05, F.lit(None)).otherwise(value).cast("int")

    return {
        "soft_del_cd": F.when(soft_del < 0.9, F.lit(None)).when(soft_del < 0.95, F.lit("")).otherwise(F.lit("0")),
        **{name: unreported(name, value) for name, value in amounts.items()},
        "days_past_due_ct_4in": dpd.cast("int"),
        "asset_class_cd_4in": asset_class,
        "acct_stat_cd": draw.choice(f"status-{salt}", STATUS_CODES, acct, *keys),
    }


def _versions(draw: _Draw, salt: str, acct: Column, *keys: Column) -> dict[str, Column]:
    """insert_ts/update_ts seconds shortly after `base_s`, sometimes NULL (NULL loses a tie)."""
    insert = F.col("base_s") + draw.int_in(f"insert-{salt}", 0, 3600, acct, *keys)
    update = insert + draw.int_in(f"update-{salt}", 0, DAY, acct, *keys)
    return {
        "insert_s": F.when(draw.u(f"insert-null-{salt}", acct, *keys) >= 0.03, insert),
        "update_s": F.when(draw.u(f"update-null-{salt}", acct, *keys) >= 0.10, update),
    }


def _records(cells: DataFrame, values: dict[str, Column]) -> DataFrame:
    """accounts_all records from cells with `idx`, `base_s`, `insert_s`, `update_s` and the given values."""
    return conform(
        cells.select(
            A,
            month_key("idx").alias("rpt_as_of_mo"),
            F.timestamp_seconds("base_s").alias("base_ts"),
            F.timestamp_seconds("insert_s").alias("insert_ts"),
            F.timestamp_seconds("update_s").alias("update_ts"),
            *[c.alias(n) for n, c in values.items()],
        ),
        ACCOUNTS_ALL,
    )


def _tie(draw: _Draw, cells: DataFrame, salt: str, acct: Column, *keys: Column) -> DataFrame:
    """Second versions with the same base_ts: insert_ts a minute later or earlier decides (or NULL loses)."""
    shift = F.when(draw.u(f"tie-direction-{salt}", acct, *keys) < 0.5, 60).otherwise(-60)
    again = cells.withColumn("insert_s", F.coalesce("insert_s", "base_s") + shift).withColumn("update_s", F.lit(None))
    return _records(again, _values(draw, salt, acct, *keys))


def _history(draw: _Draw, accounts: DataFrame) -> DataFrame:
    """Every reported month of every account, plus about 1% same-base_ts duplicates (tie-breaks)."""
    acct, idx = F.col(A), F.col("idx")
    cells = (
        accounts.select("*", F.explode(F.sequence("first", "last")).alias("idx"))
        .where(~_missing(draw, acct, idx))
        .withColumn("base_s", _month_start(idx + 1) + draw.int_in("base", 0, HISTORY_DELAY_DAYS * DAY - 1, acct, idx))
    )
    cells = cells.select("*", *[c.alias(n) for n, c in _versions(draw, "v0", acct, idx).items()])
    first_versions = _records(cells, _values(draw, "v0", acct, idx))
    ties = _tie(draw, cells.where(draw.u("tie", acct, idx) < 0.01), "tie", acct, idx)
    return first_versions.unionByName(ties)


# ---------------------------------------------------------------------------------------- late batch


def _late_month(draw: _Draw, first_mo: int) -> Column:
    """Month of a late slot: the latest month, a missing month, any month, one before the account's
    first month, or one more than 35 months before its latest month (each falls back to any month)."""
    acct, slot, first, last = F.col(A), F.col("slot"), F.col("first"), F.col("last")
    anywhere = draw.int_in("late-any", first, last, acct, slot)
    gaps = F.filter(F.sequence(first, last), lambda i: _missing(draw, acct, i))
    gap = F.element_at(gaps, draw.int_in("late-gap", 1, F.size(gaps), acct, slot))
    before = draw.int_in("late-before", first_mo, first - 1, acct, slot)
    deep = draw.int_in("late-deep", first, last - HISTORY_LENGTH, acct, slot)
    kind = draw.u("late-kind", acct, slot)
    return (
        F.when(kind < 0.25, last)
        .when((kind < 0.50) & (F.size(gaps) > 0), gap)
        .when((kind >= 0.70) & (kind < 0.80) & (first > first_mo), before)
        .when((kind >= 0.80) & (last - HISTORY_LENGTH >= first), deep)
        .otherwise(anywhere)
    )


def _late_values(draw: _Draw, salt: str, acct: Column, slot: Column) -> dict[str, Column]:
    """Values of a late record: about 2% deletes, 10% NULLs and 8% sentinels (always the balance, some others)."""
    values = _values(draw, salt, acct, slot)
    kind = draw.u(f"late-content-{salt}", acct, slot)
    delete, nulls, sentinels = kind < 0.02, (kind >= 0.02) & (kind < 0.12), (kind >= 0.12) & (kind < 0.20)

    def sometimes(name: str, p: float) -> Column:
        return draw.u(f"late-{name}-{salt}", acct, slot) < p

    def sentinel(name: str) -> Column:
        return draw.choice(f"late-sentinel-{name}-{salt}", AMOUNT_SENTINELS, acct, slot)

    out = dict(values)
    deletion = draw.choice(f"late-delete-{salt}", DELETE_CODES, acct, slot)
    out["soft_del_cd"] = F.when(delete, deletion).otherwise(values["soft_del_cd"])
    out["acct_bal_am"] = (
        F.when(nulls, F.lit(None)).when(sentinels, sentinel("acct_bal_am")).otherwise(values["acct_bal_am"])
    )
    for name in OTHER_AMOUNTS:
        out[name] = (
            F.when(nulls & sometimes(name, 0.5), F.lit(None))
            .when(sentinels & sometimes(name, 0.3), sentinel(name))
            .otherwise(values[name])
        )
    for name in ("days_past_due_ct_4in", "asset_class_cd_4in"):
        out[name] = F.when(nulls & sometimes(name, 0.5), F.lit(None)).otherwise(values[name])
    return out


def _late(draw: _Draw, accounts: DataFrame, first_mo: int, end_mo: int, late_fraction: float) -> DataFrame:
    """The late batch: 1 to 3 late months for `late_fraction` of the accounts, and ~8% second versions."""
    acct, slot = F.col(A), F.col("slot")
    start = _month_start(end_mo + 1) + HISTORY_DELAY_DAYS * DAY  # > every history base_ts
    slots = (
        accounts.where(draw.u("late", acct) < late_fraction)
        .select("*", F.explode(F.sequence(F.lit(0), draw.int_in("late-count", 0, LATE_SLOTS - 1, acct))).alias("slot"))
        .withColumn("idx", _late_month(draw, first_mo))
        # distinct base_ts per slot (mod LATE_SLOTS + 1), so versions of one month never tie completely
        .withColumn("base_s", start + draw.int_in("late-base", 0, DAY - 1, acct, slot) * (LATE_SLOTS + 1) + slot)
    )
    slots = slots.select("*", *[c.alias(n) for n, c in _versions(draw, "late", acct, slot).items()])
    first_versions = _records(slots, _late_values(draw, "late", acct, slot))
    again = slots.where(draw.u("again", acct, slot) < 0.08)
    later = again.withColumn("base_s", F.col("base_s") + 3600 * (LATE_SLOTS + 1))
    tie_or_later = draw.u("again-kind", acct, slot) < 0.5
    second_versions = _tie(draw, again.where(tie_or_later), "again-tie", acct, slot).unionByName(
        _records(later.where(~tie_or_later), _late_values(draw, "again", acct, slot))
    )
    return first_versions.unionByName(second_versions)


# ------------------------------------------------------------------------------------------ public


def generate(
    spark: SparkSession, *, accounts: int, months: int, end_month: str, seed: int, late_fraction: float = 0.10
) -> GeneratedData:
    """A deterministic data set for `seed`: months end_month-(months-1) … end_month of `accounts` accounts."""
    if accounts < 1 or months < 1:
        raise ValueError("accounts and months must be at least 1")
    if not re.match(MONTH_PATTERN, end_month):
        raise ValueError(f"end_month must be YYYY-MM, not {end_month!r}")
    if not 0.0 <= late_fraction <= 1.0:
        raise ValueError("late_fraction must be between 0 and 1")
    draw = _Draw(seed)
    end_mo = _index(end_month)
    first_mo = end_mo - (months - 1)
    accts = _accounts(spark, draw, accounts, first_mo, end_mo)
    history = _history(draw, accts)
    summary = rebuild_summary(history)
    return GeneratedData(
        history=history,
        late=_late(draw, accts, first_mo, end_mo, late_fraction),
        summary=summary,
        latest_summary=latest_of(summary),
    )


def write(generated: GeneratedData, spark: SparkIceberg, replace: bool = True) -> None:
    """Write `accounts_all` (history and late batch), `summary` and `latest_summary` as Iceberg tables.

    With `replace`, the tables are created or replaced; otherwise rows are appended (tables created
    if missing).
    """
    tables: dict[str, tuple[DataFrame, bool]] = {
        "accounts_all": (conform(generated.history.unionByName(generated.late), ACCOUNTS_ALL), True),
        "summary": (conform(generated.summary, SUMMARY), True),
        "latest_summary": (conform(generated.latest_summary, SUMMARY), False),
    }
    session = spark.session
    for name, (df, partitioned) in tables.items():
        table = spark.table(name)
        writer = df.writeTo(table)
        if partitioned:
            writer = writer.partitionedBy(F.col("rpt_as_of_mo"))
        if replace:
            writer.createOrReplace()
        elif session.catalog.tableExists(table):
            writer.append()
        else:
            writer.create()
