"""Realistic synthetic data for demos, tests and benchmarks (SPEC §6 `generate`).

Every value is drawn from hashes of (seed, purpose, account, month, …), so a seed yields the same
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

from backfill_assets.contracts.tables import (
    ACCOUNTS_ALL,
    AMOUNT_SENTINELS,
    DELETE_CODES,
    HISTORY_LENGTH,
    MONTH_PATTERN,
    SUMMARY,
)
from backfill_assets.contracts.validation import conform
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.transforms.months import month_key
from backfill_assets.transforms.rebuild import rebuild_latest, rebuild_summary

A = "cons_acct_key"
PARTITION = "rpt_as_of_mo"
DAY = 86_400
GAP_RATE = 0.10
HISTORY_DELAY_DAYS = 20  # history records of a month arrive within this many days after it ends
LATE_SLOTS = 3  # a late account gets 1 to 3 late months
# every generated base_ts lies within this many days after the end month: history delay, late slots, second versions
DELIVERY_DAYS = HISTORY_DELAY_DAYS + LATE_SLOTS + 2
NEGATIVE_DPD_CLASSES = ("1", "01", "S", "2", "B", "03", "L", "05", "X", None)
STATUS_CODES = ("11", "11", "11", "11", "11", "13", "13", "71", "78", "80", "82", "97", "DA")
AMOUNTS = ("acct_credit_ext_am", "acct_bal_am", "past_due_am", "actual_pymt_am")
LATE_NULLABLE = (*AMOUNTS, "days_past_due_ct_4in", "asset_class_cd_4in")

# the named random draws of one record (see _Draws)
VALUE_DRAWS = (
    *("balance", "dpd-kind", "dpd", "class-kind", "class", "past-due", "payment", "soft-del", "status"),
    *[f"unreported-{a}" for a in AMOUNTS],
    *[f"sentinel-{a}" for a in AMOUNTS],
    *("insert", "update", "insert-null", "update-null"),
)
HISTORY_DRAWS = (*VALUE_DRAWS, "base", "tie", "tie-direction")
LATE_DRAWS = (
    *VALUE_DRAWS,
    *("month-kind", "any", "gap", "before", "deep", "base", "again", "again-kind", "tie-direction"),
    *("content", "delete", *[f"null-{c}" for c in LATE_NULLABLE], *[f"late-sentinel-{a}" for a in AMOUNTS]),
)


@dataclass(frozen=True)
class GeneratedData:
    """A summarised history, the summary tables built from it, and the late batch that follows."""

    history: DataFrame
    late: DataFrame
    summary: DataFrame
    latest_summary: DataFrame


def _uniform(seed: int, purpose: str, *keys: Column) -> Column:
    """Uniform in [0, 1) from a hash: deterministic for a seed, independent of partitioning."""
    return F.pmod(F.xxhash64(F.lit(seed), F.lit(purpose), *keys), F.lit(1 << 53)) / float(1 << 53)


def _int_in(u: Column, low: Column | int, high: Column | int) -> Column:
    """Uniform integer in [low, high] from a uniform `u`."""
    lo = F.lit(low) if isinstance(low, int) else low
    hi = F.lit(high) if isinstance(high, int) else high
    return (lo + F.floor(u * (hi - lo + 1))).cast("int")


def _choice(u: Column, options: Sequence[str | int | None]) -> Column:
    return F.element_at(F.array(*[F.lit(o) for o in options]), _int_in(u, 1, len(options)))


class _Draws:
    """The named uniform draws of one record: 16-bit slices of a few 64-bit hash columns.

    One hash per four draws keeps the generated code small enough for the JIT (a hash per draw
    made the projection too long to be JIT-compiled, and generation several times slower).
    """

    PER_HASH = 4

    def __init__(self, seed: int, salt: str, names: Sequence[str], *keys: Column) -> None:
        self.salt = salt
        count = -(-len(names) // self.PER_HASH)
        self.hashes = [F.xxhash64(F.lit(seed), F.lit(salt), F.lit(i), *keys).alias(self._hash(i)) for i in range(count)]
        self.index = {name: i for i, name in enumerate(names)}

    def _hash(self, i: int) -> str:
        return f"_h_{self.salt}_{i}"

    def add_to(self, df: DataFrame) -> DataFrame:
        return df.select("*", *self.hashes)

    def __getitem__(self, name: str) -> Column:
        i = self.index[name]
        bits = F.shiftright(F.col(self._hash(i // self.PER_HASH)), 16 * (i % self.PER_HASH)).bitwiseAND(0xFFFF)
        return bits / 65536.0

    def int_in(self, name: str, low: Column | int, high: Column | int) -> Column:
        return _int_in(self[name], low, high)

    def choice(self, name: str, options: Sequence[str | int | None]) -> Column:
        return _choice(self[name], options)


def _index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _month_start(idx: Column) -> Column:
    """Epoch seconds of the first day of month index `idx` (no time zone involved)."""
    return (
        F.unix_date(F.make_date(F.floor(idx / 12).cast("int"), (idx % 12 + 1).cast("int"), F.lit(1))).cast("long") * DAY
    )


# ---------------------------------------------------------------- accounts and their reported months


def _accounts(spark: SparkSession, seed: int, accounts: int, first_mo: int, end_mo: int) -> DataFrame:
    """One row per account: first and last month (half are old, most still open) and credit limit."""
    acct = F.col(A)

    def u(purpose: str) -> Column:
        return _uniform(seed, purpose, acct)

    first = F.when(u("old") < 0.5, F.lit(first_mo)).otherwise(_int_in(u("first"), first_mo, end_mo))
    last = F.when(u("open") < 0.85, F.lit(end_mo)).otherwise(_int_in(u("last"), F.col("first"), end_mo))
    return (
        spark.range(accounts)
        .select((F.col("id") + 1).alias(A))
        .withColumn("first", first.cast("int"))
        .withColumn("last", last.cast("int"))
        .withColumn("limit", _int_in(u("limit"), 1, 200) * 500)
    )


def _missing(seed: int, acct: Column, idx: Column) -> Column:
    """About 10% of the months strictly between an account's first and last month are never reported."""
    return (idx > F.col("first")) & (idx < F.col("last")) & (_uniform(seed, "gap", acct, idx) < GAP_RATE)


def _values(d: _Draws) -> dict[str, Column]:
    """The reported values of one record (an account's credit limit is fixed; the rest varies)."""
    limit = F.col("limit")
    balance = F.floor(limit * d["balance"])
    kind = d["dpd-kind"]
    dpd = F.when(kind < 0.85, F.lit(0)).when(kind < 0.93, d.int_in("dpd", 30, 200)).when(kind < 0.98, F.lit(-1))
    asset_class = F.when((dpd == -1) | (d["class-kind"] < 0.2), d.choice("class", NEGATIVE_DPD_CLASSES))
    amounts = {
        "acct_credit_ext_am": limit,
        "acct_bal_am": balance,
        "past_due_am": F.when(dpd > 0, F.floor(balance * 0.1 * d["past-due"])).otherwise(F.lit(0)),
        "actual_pymt_am": F.floor(balance * 0.05 * d["payment"]),
    }

    def unreported(name: str, value: Column) -> Column:
        """Now and then a sentinel or NULL: "not reported"."""
        p = d[f"unreported-{name}"]
        return (
            F.when(p < 0.03, d.choice(f"sentinel-{name}", AMOUNT_SENTINELS))
            .when(p < 0.05, F.lit(None))
            .otherwise(value)
        )

    soft_del = d["soft-del"]
    return {
        "soft_del_cd": F.when(soft_del < 0.9, F.lit(None)).when(soft_del < 0.95, F.lit("")).otherwise(F.lit("0")),
        **{name: unreported(name, value) for name, value in amounts.items()},
        "days_past_due_ct_4in": dpd,
        "asset_class_cd_4in": asset_class,
        "acct_stat_cd": d.choice("status", STATUS_CODES),
    }


def _versions(d: _Draws) -> dict[str, Column]:
    """insert_ts/update_ts seconds shortly after `base_s`, sometimes NULL (NULL loses a tie)."""
    insert = F.col("base_s") + d.int_in("insert", 0, 3600)
    update = insert + d.int_in("update", 0, DAY)
    return {
        "insert_s": F.when(d["insert-null"] >= 0.03, insert),
        "update_s": F.when(d["update-null"] >= 0.10, update),
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


def _tie(cells: DataFrame, d: _Draws, again: _Draws) -> DataFrame:
    """Second versions with the same base_ts: insert_ts a minute later or earlier decides (or NULL loses).

    `d` holds the draws of the first version, `again` those of the values of the second.
    """
    shift = F.when(d["tie-direction"] < 0.5, 60).otherwise(-60)
    cells = again.add_to(cells.withColumn("insert_s", F.coalesce("insert_s", "base_s") + shift))
    return _records(cells.withColumn("update_s", F.lit(None)), _values(again))


def _history(seed: int, accounts: DataFrame, first_mo: int, older_months: int) -> DataFrame:
    """Every reported month of every account, plus about 1% same-base_ts duplicates (tie-breaks).

    Accounts open since `first_mo` also report the `older_months` months before it (older history
    that no late record of the batch reaches; the batch itself does not depend on it).
    """
    acct, idx, first = F.col(A), F.col("idx"), F.col("first")
    d = _Draws(seed, "history", HISTORY_DRAWS, acct, idx)
    since = F.when(first == first_mo, first - older_months).otherwise(first)
    cells = d.add_to(
        accounts.select("*", F.explode(F.sequence(since, "last")).alias("idx")).where(~_missing(seed, acct, idx))
    )
    cells = cells.withColumn("base_s", _month_start(idx + 1) + d.int_in("base", 0, HISTORY_DELAY_DAYS * DAY - 1))
    cells = cells.withColumns(_versions(d))
    ties = _tie(cells.where(d["tie"] < 0.01), d, _Draws(seed, "history-tie", VALUE_DRAWS, acct, idx))
    return _records(cells, _values(d)).unionByName(ties)


# ---------------------------------------------------------------------------------------- late batch


def _late_month(seed: int, d: _Draws, first_mo: int) -> Column:
    """Month of a late slot: the latest month, a missing month, any month, one before the account's
    first month, or one more than 35 months before its latest month (each falls back to any month)."""
    acct, first, last = F.col(A), F.col("first"), F.col("last")
    anywhere = d.int_in("any", first, last)
    gaps = F.filter(F.sequence(first, last), lambda i: _missing(seed, acct, i))
    gap = F.element_at(gaps, d.int_in("gap", 1, F.size(gaps)))
    before = d.int_in("before", first_mo, first - 1)
    deep = d.int_in("deep", first, last - HISTORY_LENGTH)
    kind = d["month-kind"]
    return (
        F.when(kind < 0.25, last)
        .when((kind < 0.50) & (F.size(gaps) > 0), gap)
        .when((kind >= 0.70) & (kind < 0.80) & (first > first_mo), before)
        .when((kind >= 0.80) & (last - HISTORY_LENGTH >= first), deep)
        .otherwise(anywhere)
    )


def _late_values(d: _Draws) -> dict[str, Column]:
    """Values of a late record: about 2% deletes, 10% NULLs and 8% sentinels (always the balance, some others)."""
    values = _values(d)
    kind = d["content"]
    delete, nulls, sentinels = kind < 0.02, (kind >= 0.02) & (kind < 0.12), (kind >= 0.12) & (kind < 0.20)
    out = dict(values)
    out["soft_del_cd"] = F.when(delete, d.choice("delete", DELETE_CODES)).otherwise(values["soft_del_cd"])
    for name in LATE_NULLABLE:
        always = name == "acct_bal_am"
        nulled = nulls & (F.lit(always) | (d[f"null-{name}"] < 0.5))
        value = F.when(nulled, F.lit(None))
        if name in AMOUNTS:
            sentinel = d.choice(f"late-sentinel-{name}", AMOUNT_SENTINELS)
            value = value.when(sentinels & (F.lit(always) | (d[f"null-{name}"] < 0.3)), sentinel)
        out[name] = value.otherwise(values[name])
    return out


def _late(seed: int, accounts: DataFrame, first_mo: int, end_mo: int, late_fraction: float) -> DataFrame:
    """The late batch: 1 to 3 late months for `late_fraction` of the accounts, and ~8% second versions."""
    acct, slot = F.col(A), F.col("slot")
    start = _month_start(F.lit(end_mo + 1)) + HISTORY_DELAY_DAYS * DAY  # > every history base_ts
    count = _int_in(_uniform(seed, "late-count", acct), 1, LATE_SLOTS)
    d = _Draws(seed, "late", LATE_DRAWS, acct, slot)
    slots = d.add_to(
        accounts.where(_uniform(seed, "late", acct) < late_fraction).select(
            "*", F.explode(F.sequence(F.lit(0), count - 1)).alias("slot")
        )
    )
    # distinct base_ts per slot (mod LATE_SLOTS + 1), so that versions of one month never tie completely
    slots = slots.withColumn("idx", _late_month(seed, d, first_mo)).withColumn(
        "base_s", start + d.int_in("base", 0, DAY - 1) * (LATE_SLOTS + 1) + slot
    )
    slots = slots.withColumns(_versions(d))
    again = slots.where(d["again"] < 0.08)
    tie = d["again-kind"] < 0.5
    later = _Draws(seed, "late-later", LATE_DRAWS, acct, slot)
    later_versions = later.add_to(again.where(~tie).withColumn("base_s", F.col("base_s") + 3600 * (LATE_SLOTS + 1)))
    later_versions = later_versions.withColumns(_versions(later))
    return (
        _records(slots, _late_values(d))
        .unionByName(_tie(again.where(tie), d, _Draws(seed, "late-tie", VALUE_DRAWS, acct, slot)))
        .unionByName(_records(later_versions, _late_values(later)))
    )


# ------------------------------------------------------------------------------------------ public


def generate(
    spark: SparkSession,
    *,
    accounts: int,
    months: int,
    end_month: str,
    seed: int,
    late_fraction: float = 0.10,
    older_months: int = 0,
) -> GeneratedData:
    """A deterministic data set for `seed`: months end_month-(months-1) … end_month of `accounts` accounts.

    `older_months` adds that many months of history before them (for the accounts open since the
    first month) and changes nothing else: the same seed gives the same late batch, so a benchmark
    can show that the cost of a batch does not grow with the history behind it.
    """
    if accounts < 1 or months < 1 or older_months < 0:
        raise ValueError("accounts and months must be at least 1, older_months at least 0")
    if not re.match(MONTH_PATTERN, end_month):
        raise ValueError(f"end_month must be YYYY-MM, not {end_month!r}")
    if not 0.0 <= late_fraction <= 1.0:
        raise ValueError("late_fraction must be between 0 and 1")
    end_mo = _index(end_month)
    first_mo = end_mo - (months - 1)
    accts = _accounts(spark, seed, accounts, first_mo, end_mo)
    history = _history(seed, accts, first_mo, older_months)
    return GeneratedData(
        history=history,
        late=_late(seed, accts, first_mo, end_mo, late_fraction),
        summary=rebuild_summary(history),
        latest_summary=rebuild_latest(history),  # = latest_of(summary), without building every row again
    )


def _write(df: DataFrame, spark_resource: SparkIceberg, name: str, partitioned: bool, replace: bool) -> None:
    """Create or replace (or append to) one Iceberg table.

    A partitioned table gets its rows sorted by month within each task and written without
    Iceberg's default hash distribution: the same clustering, without shuffling the wide rows.
    """
    table = spark_resource.table(name)
    if partitioned:
        df = df.sortWithinPartitions(PARTITION)
    writer = df.writeTo(table)
    if partitioned:
        writer = writer.partitionedBy(F.col(PARTITION)).option("distribution-mode", "none")
    if replace:
        writer.createOrReplace()
    elif spark_resource.session.catalog.tableExists(table):
        writer.append()
    else:
        writer.create()


def write(generated: GeneratedData, spark_resource: SparkIceberg, replace: bool = True) -> None:
    """Write `accounts_all` (history, then the late batch), `summary` and `latest_summary` as Iceberg tables.

    With `replace`, the tables are created or replaced; otherwise rows are appended (tables created
    if missing). The late batch is appended as a load of its own, in files of its own, as a real
    delivery arrives: a run then finds it from file metadata without scanning the history.
    """
    _write(conform(generated.history, ACCOUNTS_ALL), spark_resource, "accounts_all", partitioned=True, replace=replace)
    _write(conform(generated.late, ACCOUNTS_ALL), spark_resource, "accounts_all", partitioned=True, replace=False)
    _write(conform(generated.summary, SUMMARY), spark_resource, "summary", partitioned=True, replace=replace)
    latest = conform(generated.latest_summary, SUMMARY)
    _write(latest, spark_resource, "latest_summary", partitioned=False, replace=replace)
