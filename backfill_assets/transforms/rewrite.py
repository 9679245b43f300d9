"""The rows a batch rewrites, their histories rebuilt from scalars and one base row per account (docs/spec.md §4.2).

Every position of an active row is the value of an earlier row of the same account, so the arrays of
each row a run rewrites follow from two things only:

1. the scalars of the account's rows (and the batch's records) from its first changed month `f` on;
2. for the months before `f`, the arrays of one base row, shifted: the account's own row at `f` when
   it was active (its older positions), else its nearest earlier active row within the history.

The stored arrays of the rows being rewritten are never read: decoding them row by row was most of a
large run's read. Taking the older months from the base row, not from scalars, keeps history loaded
from an older system into the positions before an account's first row.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from backfill_assets.contracts.layout import Layout
from backfill_assets.contracts.values import is_deleted, layout_grid
from backfill_assets.transforms.months import month_index

A, M = "cons_acct_key", "rpt_as_of_mo"


def old_columns(layout: Layout) -> tuple[str, ...]:
    """What a run reads of the summary rows it may rewrite: key, base_ts and scalars, no history array."""
    return (A, M, "base_ts", *layout.scalar_names)


def _sources(layout: Layout) -> tuple[str, ...]:
    """The scalars the histories hold."""
    return tuple(dict.fromkeys(layout.history_sources.values()))


def _slot_type(layout: Layout) -> StructType:
    fields = [StructField(v, layout.scalar_types[v]) for v in _sources(layout)]
    return StructType([*fields, StructField("nb", layout.summary["base_ts"].dataType)])


def _gather(joined: DataFrame, old_rows: DataFrame, bases: DataFrame, latest: DataFrame, layout: Layout) -> DataFrame:
    """Per (account, month): its old scalars, old latest row, base row (full) and own record, if any."""
    columns, scalars = layout.summary_columns, layout.scalar_names
    pieces = [
        old_rows.select(A, F.col(M).alias("mo"), F.struct(*old_columns(layout)[2:]).alias("summary_old")),
        latest.select(A, F.col(M).alias("mo"), F.struct(*columns).alias("latest_old")),
        bases.select(A, F.col(M).alias("mo"), F.struct(*columns).alias("base_row")),
        joined.select(A, F.col(M).alias("mo"), F.struct("is_deleted", "base_ts", *scalars).alias("own")),
    ]
    everything = reduce(lambda x, y: x.unionByName(y, allowMissingColumns=True), pieces)
    return (
        everything.repartition(A)  # one shuffle: everything below stays within an account
        .groupBy(A, "mo")
        .agg(*[F.first(c, ignorenulls=True).alias(c) for c in ("summary_old", "latest_old", "base_row", "own")])
        .withColumn("idx", month_index("mo"))
    )


def _slot(row: Column, layout: Layout) -> Column:
    """What a month puts into the histories: the values of an active row (NULL otherwise), and its record's base_ts."""
    own, old = row["own"], row["summary_old"]
    old_active = old.isNotNull() & ~is_deleted(old["soft_del_cd"])

    def value(v: str) -> Column:
        return F.when(own.isNotNull(), F.when(~own["is_deleted"], own[v])).when(old_active, old[v])

    return F.struct(*[value(v).alias(v) for v in _sources(layout)], own["base_ts"].alias("nb"))


def _main_timeline(rows: Column, first: Column, layout: Layout) -> Column:
    """The slots of months f … last, dense (NULL for a month without a row or record)."""
    later = F.filter(rows, lambda r: r["idx"] >= first)

    def gap_then_slot(r: Column, k: Column) -> Column:
        gap = F.when(k == 0, F.lit(0)).otherwise(r["idx"] - later[k - 1]["idx"] - 1)
        return F.concat(F.array_repeat(F.lit(None).cast(_slot_type(layout)), gap), F.array(_slot(r, layout)))

    return F.flatten(F.transform(later, gap_then_slot))


def _timelines(main: Column, first: Column, base: Column, layout: Layout) -> dict[str, Column]:
    """Per history source (and `nb`, the batch's base_ts): a dense timeline from month f−(N−1) on.

    The N − 1 months before f come from the base row's arrays (chronological, shifted by f − base month,
    NULL between the base month and f); from f on, the months' slots.
    """
    shift, pad = first - month_index(base[M]), layout.reach
    out = {}
    for h, v in layout.histories:
        nulls = F.array_repeat(F.lit(None).cast(layout.scalar_types[v]), pad)
        older = F.slice(F.concat(F.reverse(base[h]), nulls), shift + 1, pad)
        out[v] = F.concat(F.coalesce(older, nulls), main[v])
    out["nb"] = F.concat(F.array_repeat(F.lit(None).cast(layout.summary["base_ts"].dataType), pad), main["nb"])
    return out


def rewrite(joined: DataFrame, old_rows: DataFrame, bases: DataFrame, latest: DataFrame, layout: Layout) -> DataFrame:
    """Every gathered row, new or old, with flags `written` (summary changes) and `latest_changed`.

    * `joined`: the batch's counting records (`transforms.windows.join_windows`);
    * `old_rows`: `old_columns(layout)` of the old summary rows of the batch's accounts from each account's
      first changed month on (and any row that can become its latest);
    * `bases`: the whole old row at each account's base key (its first record's `base_mo`);
    * `latest`: the old latest_summary rows of the batch's accounts.

    `row` is whole where the run wrote it or read it whole (`complete`); an unwritten old row read as
    scalars only has NULL arrays: the caller reads it whole if it becomes an account's latest.
    """
    gathered = _gather(joined, old_rows, bases, latest, layout)
    old_scalars, n, pad = old_columns(layout)[2:], layout.history_length, layout.reach
    entry = F.struct("idx", "mo", "summary_old", "latest_old", "base_row", "own")
    accounts = gathered.groupBy(A).agg(
        F.sort_array(F.collect_list(entry)).alias("rows"), F.first("base_row", ignorenulls=True).alias("base")
    )
    rows = F.col("rows")
    first = F.array_min(F.transform(F.filter(rows, lambda r: r["own"].isNotNull()), lambda r: r["idx"]))
    # the timeline once per account, in a projection of its own below the explode (not per row or field)
    with_first = accounts.select(A, rows, "base", first.alias("f"))
    main = with_first.select(A, rows, "base", "f", _main_timeline(rows, F.col("f"), layout).alias("_main"))
    timelines = _timelines(F.col("_main"), F.col("f"), F.col("base"), layout)
    laid_out = main.select(A, rows, "f", *[t.alias(f"_t_{v}") for v, t in timelines.items()])
    exploded = laid_out.select(A, "f", *[f"_t_{v}" for v in (*_sources(layout), "nb")], F.explode(rows).alias("r"))

    def window(v: str) -> Column:
        """Months idx−(N−1) … idx of timeline v, position 0 = month idx (NULL before f)."""
        return F.when(
            F.col("r.idx") >= F.col("f"), F.reverse(F.slice(F.col(f"_t_{v}"), F.col("r.idx") - F.col("f") + 1, n))
        )

    latest_old = F.col("r.latest_old")
    latest_scalars = F.when(latest_old.isNotNull(), F.struct(*[latest_old[c].alias(c) for c in old_scalars]))
    own, old = F.col("r.own"), F.coalesce(F.col("r.summary_old"), latest_scalars)
    own_deleted = F.coalesce(own["is_deleted"], F.lit(False))
    old_active = old.isNotNull() & ~is_deleted(old["soft_del_cd"])
    no_window = F.array().cast(layout.summary["base_ts"].dataType.simpleString().join(("array<", ">")))
    reached = F.array_max(F.slice(F.coalesce(window("nb"), no_window), 2, pad)).isNotNull()
    written = own.isNotNull() | (old_active & reached)

    def scalar(c: str) -> Column:
        keep_old = own.isNull() | (own_deleted & F.lit(c != "soft_del_cd"))
        return F.when(keep_old, old[c]).otherwise(own[c])

    histories = {h: window(v) for h, v in layout.histories}
    new_row = F.struct(
        F.col(A).alias(A),
        F.col("r.mo").alias(M),
        F.greatest(F.array_max(window("nb")), old["base_ts"]).alias("base_ts"),
        *[scalar(c).alias(c) for c in layout.scalar_names],
        *[c.alias(h) for h, c in histories.items()],
        *[c.alias(g) for g, c in layout_grid(layout, histories).items()],
    )
    whole = F.coalesce(F.col("r.latest_old"), F.col("r.base_row"))
    partial = F.struct(
        *[
            (F.col(A) if c == A else F.col("r.mo") if c == M else old[c] if c in old_scalars else F.lit(None))
            .cast(layout.summary[c].dataType)
            .alias(c)
            for c in layout.summary_columns
        ]
    )
    updated = exploded.where(written | old.isNotNull()).select(
        A,
        F.col("r.mo").alias("mo"),
        F.col("r.latest_old").isNotNull().alias("was_latest"),
        written.alias("written"),
        F.when(written, new_row).when(whole.isNotNull(), whole).otherwise(partial).alias("row"),
        (written | whole.isNotNull()).alias("complete"),
        F.col("r.summary_old").isNotNull().alias("from_summary"),
        F.col("r.summary_old").alias("summary_old"),
        F.col("r.latest_old").alias("latest_old"),
    )
    account = Window.partitionBy(A)
    newest_active = F.max(F.when(~is_deleted(F.col("row.soft_del_cd")), F.col("mo"))).over(account)
    is_newest = F.col("mo") == F.coalesce(newest_active, F.max("mo").over(account))
    return updated.withColumn("latest_changed", is_newest & (F.col("written") | ~F.col("was_latest")))


def _fields(frame: DataFrame, struct: str) -> list[str]:
    """The field names of a struct column of `frame` (the layout's columns, as `rewrite` built them)."""
    data_type = frame.schema[struct].dataType
    assert isinstance(data_type, StructType)
    return data_type.fieldNames()


def _rows(frame: DataFrame, row: str) -> DataFrame:
    """Summary columns from a row struct, the account key taken from `frame` itself: Spark then
    knows the result is still partitioned by account, so what is grouped or joined by account below
    needs no shuffle of the wide rows."""
    return frame.select(*[F.col(A) if c == A else F.col(f"{row}.{c}").alias(c) for c in _fields(frame, row)])


def written_rows(updated: DataFrame) -> DataFrame:
    """The summary rows to MERGE."""
    return _rows(updated.where("written"), "row")


def changed_latest_rows(updated: DataFrame) -> DataFrame:
    """The latest_summary rows to MERGE."""
    return _rows(updated.where("latest_changed"), "row")


def _scalars(frame: DataFrame, row: str) -> DataFrame:
    """The columns `old_columns` names from a row struct (whole or scalars only), the key from `frame`."""
    scalars = _fields(frame, "summary_old")  # base_ts and the scalars
    return frame.select(A, F.col("mo").alias(M), *[F.col(f"{row}.{c}").alias(c) for c in scalars])


def scalars_read(updated: DataFrame) -> DataFrame:
    """The summary rows the run read (their scalars: all it read of most of them)."""
    return _scalars(updated.where("from_summary"), "summary_old")


def scalars_after(updated: DataFrame) -> DataFrame:
    """The scalars of the summary rows read or written, as they are after the run."""
    return _scalars(updated.where(F.col("from_summary") | F.col("written")), "row")
