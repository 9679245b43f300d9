"""Accounts, the values and versions of the records they report, and the history already summarised."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from backfill_assets.contracts.conform import conform
from backfill_assets.contracts.layout import DEFAULT_LAYOUT, Layout
from backfill_assets.generate.draws import Draws, choice, int_in, uniform
from backfill_assets.transforms.months import month_key

A = "cons_acct_key"
DAY = 86_400
GAP_RATE = 0.10
HISTORY_DELAY_DAYS = 20  # history records of a month arrive within this many days after it ends
NEGATIVE_DPD_CLASSES = ("1", "01", "S", "2", "B", "03", "L", "05", "X", None)
STATUS_CODES = ("11", "11", "11", "11", "11", "13", "13", "71", "78", "80", "82", "97", "DA")
AMOUNTS = ("acct_credit_ext_am", "acct_bal_am", "past_due_am", "actual_pymt_am")
AMOUNT_SENTINELS = DEFAULT_LAYOUT.sentinels["balance_am"]
DPD, ASSET_CLASS = "days_past_due_ct_4in", "asset_class_cd_4in"  # the default rating inputs
CODES = ("A", "B", "C", "D", "E", "F", "G", "H")

# the named random draws of one record (see Draws)
VALUE_DRAWS = (
    *("balance", "dpd-kind", "dpd", "class-kind", "class", "past-due", "payment", "soft-del", "status"),
    *[f"unreported-{a}" for a in AMOUNTS],
    *[f"sentinel-{a}" for a in AMOUNTS],
    *("insert", "update", "insert-null", "update-null"),
)
HISTORY_DRAWS = (*VALUE_DRAWS, "base", "tie", "tie-direction")


def month_index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_start(idx: Column) -> Column:
    """Epoch seconds of the first day of month index `idx` (no time zone involved)."""
    return (
        F.unix_date(F.make_date(F.floor(idx / 12).cast("int"), (idx % 12 + 1).cast("int"), F.lit(1))).cast("long") * DAY
    )


# ---------------------------------------------------------------- accounts and their reported months


def draw_accounts(spark: SparkSession, seed: int, accounts: int, first_mo: int, end_mo: int) -> DataFrame:
    """One row per account: first and last month (half are old, most still open) and credit limit."""
    acct = F.col(A)

    def u(purpose: str) -> Column:
        return uniform(seed, purpose, acct)

    first = F.when(u("old") < 0.5, F.lit(first_mo)).otherwise(int_in(u("first"), first_mo, end_mo))
    last = F.when(u("open") < 0.85, F.lit(end_mo)).otherwise(int_in(u("last"), F.col("first"), end_mo))
    return (
        spark.range(accounts)
        .select((F.col("id") + 1).alias(A))
        .withColumn("first", first.cast("int"))
        .withColumn("last", last.cast("int"))
        .withColumn("limit", int_in(u("limit"), 1, 200) * 500)
    )


def is_missing(seed: int, acct: Column, idx: Column) -> Column:
    """About 10% of the months strictly between an account's first and last month are never reported."""
    return (idx > F.col("first")) & (idx < F.col("last")) & (uniform(seed, "gap", acct, idx) < GAP_RATE)


def record_values(d: Draws, layout: Layout) -> dict[str, Column]:
    """The reported values of one record: the source columns of `layout` (see `layout_values`)."""
    return layout_values(default_values(d), layout)


def default_values(d: Draws) -> dict[str, Column]:
    """The reported values of the default layout's source columns (an account's credit limit is fixed)."""
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
            F.when(p < 0.03, d.choice(f"sentinel-{name}", list(AMOUNT_SENTINELS)))
            .when(p < 0.05, F.lit(None))
            .otherwise(value)
        )

    soft_del = d["soft-del"]
    return {
        "soft_del_cd": F.when(soft_del < 0.9, F.lit(None)).when(soft_del < 0.95, F.lit("")).otherwise(F.lit("0")),
        **{name: unreported(name, value) for name, value in amounts.items()},
        DPD: dpd,
        ASSET_CLASS: asset_class,
        "acct_stat_cd": d.choice("status", STATUS_CODES),
    }


def layout_values(defaults: dict[str, Column], layout: Layout) -> dict[str, Column]:
    """`soft_del_cd` and each source column of `layout`: a default column as drawn, a rating input as the
    default days past due or asset class, any other column drawn for its type (now and then NULL or,
    for a scalar with sentinels, a sentinel), from hashes of the record's key and version."""
    roles = {}
    for s in layout.scalars:
        if s.rating:
            roles[layout.sources[s.rating[0]]], roles[layout.sources[s.rating[1]]] = DPD, ASSET_CLASS
    sentinels = {layout.sources[n]: v for n, v in layout.sentinels.items() if n in layout.sources}
    out = {"soft_del_cd": defaults["soft_del_cd"]}
    for f in layout.accounts_all.fields[6:]:  # after the keys, versions and soft_del_cd
        if f.name in defaults or f.name in roles:
            out[f.name] = defaults[roles.get(f.name, f.name)]
        else:
            out[f.name] = _drawn(f.name, f.dataType.simpleString(), sentinels.get(f.name, ()))
    return out


def _drawn(column: str, kind: str, sentinels: tuple[int | float, ...]) -> Column:
    """A value of a column the default layout lacks: plausible for its type, 5% NULL, 3% a sentinel."""

    def u(purpose: str) -> Column:
        return uniform(0, f"{column}/{purpose}", F.col(A), F.col("idx"), F.col("base_s"))

    values = {
        "int": int_in(u("v"), 0, 100_000),
        "bigint": int_in(u("v"), 0, 100_000).cast("bigint"),
        "double": F.round(u("v") * 10_000, 2),
        "string": choice(u("v"), CODES),
        "date": F.date_from_unix_date((F.col("base_s") / DAY).cast("int") - int_in(u("v"), 0, 3650)),
        "timestamp": F.timestamp_seconds(F.col("base_s") - int_in(u("v"), 0, 30 * DAY)),
        "boolean": u("v") < 0.5,
    }
    value = values["double"] if kind.startswith("decimal") else values[kind]
    drawn = F.when(u("null") < 0.05, F.lit(None))
    if sentinels:
        drawn = drawn.when(u("null") < 0.08, choice(u("sentinel"), list(sentinels)))
    return drawn.otherwise(value).cast(kind)


def record_versions(d: Draws) -> dict[str, Column]:
    """insert_ts/update_ts seconds shortly after `base_s`, sometimes NULL (NULL loses a tie)."""
    insert = F.col("base_s") + d.int_in("insert", 0, 3600)
    update = insert + d.int_in("update", 0, DAY)
    return {
        "insert_s": F.when(d["insert-null"] >= 0.03, insert),
        "update_s": F.when(d["update-null"] >= 0.10, update),
    }


def to_records(cells: DataFrame, values: dict[str, Column], layout: Layout) -> DataFrame:
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
        layout.accounts_all,
    )


def tie_versions(cells: DataFrame, d: Draws, again: Draws, layout: Layout) -> DataFrame:
    """Second versions with the same base_ts: insert_ts a minute later or earlier decides (or NULL loses).

    `d` holds the draws of the first version, `again` those of the values of the second.
    """
    shift = F.when(d["tie-direction"] < 0.5, 60).otherwise(-60)
    cells = again.add_to(cells.withColumn("insert_s", F.coalesce("insert_s", "base_s") + shift))
    return to_records(cells.withColumn("update_s", F.lit(None)), record_values(again, layout), layout)


def draw_history(seed: int, accounts: DataFrame, first_mo: int, older_months: int, layout: Layout) -> DataFrame:
    """Every reported month of every account, plus about 1% same-base_ts duplicates (tie-breaks).

    Accounts open since `first_mo` also report the `older_months` months before it (older history
    that no late record of the batch reaches; the batch itself does not depend on it).
    """
    acct, idx, first = F.col(A), F.col("idx"), F.col("first")
    d = Draws(seed, "history", HISTORY_DRAWS, acct, idx)
    since = F.when(first == first_mo, first - older_months).otherwise(first)
    cells = d.add_to(
        accounts.select("*", F.explode(F.sequence(since, "last")).alias("idx")).where(~is_missing(seed, acct, idx))
    )
    cells = cells.withColumn("base_s", month_start(idx + 1) + d.int_in("base", 0, HISTORY_DELAY_DAYS * DAY - 1))
    cells = cells.withColumns(record_versions(d))
    again = Draws(seed, "history-tie", VALUE_DRAWS, acct, idx)
    ties = tie_versions(cells.where(d["tie"] < 0.01), d, again, layout)
    return to_records(cells, record_values(d, layout), layout).unionByName(ties)
