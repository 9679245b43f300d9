"""The backfill asset graph: new records → cases → reach → patches → summary (one Spark job per run)."""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at definition time.

import datetime as dt
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.io_manager import partition_filter
from backfill_assets.partitions import HISTORY_WINDOW, MONTHLY
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.tables import CLASSIFIED, HISTORY_LENGTH, JOINED, PATCHES, ddl
from backfill_assets.transforms.apply import apply_patches, changed_latest_rows, written_rows
from backfill_assets.transforms.classify import CASES, classify, pending_records, winners
from backfill_assets.transforms.histories import history_patches
from backfill_assets.transforms.months import add_months
from backfill_assets.transforms.windows import join_windows

REACH = HISTORY_LENGTH - 1

accounts_all = dg.AssetSpec(
    "accounts_all",
    partitions_def=MONTHLY,
    group_name="sources",
    kinds={"iceberg"},
    description="Account records as lenders deliver them, late ones included (SPEC §2.1).",
)


def _spark_asset(schema: str | None, **kwargs: Any) -> Any:
    """Shared shape of the graph's assets: monthly, one run for a whole range, stored in Iceberg."""
    return dg.asset(
        partitions_def=MONTHLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="spark_io",
        group_name="backfill",
        kinds={"spark", "iceberg"},
        metadata={"spark_schema": schema} if schema else None,
        **kwargs,
    )


def _fresh(df: DataFrame, watermark: dt.datetime | None) -> DataFrame:
    """Only what the committed watermark has not yet applied (stale stored outputs drop out)."""
    return pending_records(df, watermark)


def _table(rows: list[Any], columns: list[str]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


def required_range(pending: list[str], last_key: str) -> tuple[str, str] | None:
    """The partitions a run must cover to apply every pending month and the 35 months each reaches."""
    if not pending:
        return None
    return pending[0], min(add_months(pending[-1], REACH), last_key)


def _check_selection(pending: list[str], keys: list[str], last_key: str) -> None:
    needed = required_range(pending, last_key)
    if needed is None:
        return
    outside = [m for m in pending if m not in keys]
    if outside or keys[-1] < needed[1]:
        raise dg.Failure(
            f"accounts_all has unapplied records in month(s) {', '.join(pending[:6])}"
            f"{' …' if len(pending) > 6 else ''}; a run must cover partitions {needed[0]}...{needed[1]}"
            f" (selected {keys[0]}...{keys[-1]}). Select that range or use `backfill-assets run`."
        )


@_spark_asset(ddl(CLASSIFIED), deps=[accounts_all])
def classified_accounts(context: AssetExecutionContext, lakehouse: Lakehouse) -> dg.Output[DataFrame]:
    """Unapplied records of these months, one winner per account and month, in summary values, with their case."""
    keys = context.partition_keys
    lakehouse.ensure_tables()
    watermark = lakehouse.watermark()
    pending = lakehouse.pending_months(watermark)
    _check_selection(pending, keys, MONTHLY.get_last_partition_key() or keys[-1])
    records = _fresh(lakehouse.read(lakehouse.accounts_table).where(partition_filter(keys)), watermark)
    classified = classify(winners(records), lakehouse.read(lakehouse.latest_table)).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    counts = classified.groupBy("rpt_as_of_mo", "case_type").count().orderBy("rpt_as_of_mo", "case_type").collect()
    by_case = {c: sum(r["count"] for r in counts if r["case_type"] == c) for c in CASES}
    context.log.info(f"watermark {watermark}; pending months {pending}; records by case {by_case}")
    return dg.Output(
        classified,
        metadata={
            "watermark": str(watermark),
            "records": sum(by_case.values()),
            **{f"case_{c}": n for c, n in by_case.items()},
            "months_with_records": len({r["rpt_as_of_mo"] for r in counts}),
            "cases_by_month": _table(counts, ["rpt_as_of_mo", "case_type", "count"]),
        },
    )


@_spark_asset(ddl(CLASSIFIED))
def case3_backfill(classified_accounts: DataFrame) -> DataFrame:
    """Case III: records of known accounts at or before their latest month (late, corrections, deletions)."""
    return classified_accounts.where(F.col("case_type") == "III")


@_spark_asset(ddl(CLASSIFIED))
def new_and_forward_accounts(classified_accounts: DataFrame) -> DataFrame:
    """Cases I, II and IV: new accounts, bulk history loads and months after an account's latest."""
    return classified_accounts.where(F.col("case_type") != "III")


@_spark_asset(ddl(JOINED))
def joined_windows(
    context: AssetExecutionContext,
    lakehouse: Lakehouse,
    case3_backfill: DataFrame,
    new_and_forward_accounts: DataFrame,
) -> dg.Output[DataFrame]:
    """Each record with the summary rows it reaches: its own, its later rows, and the row it inherits from.

    Reads only key and delete flag of `summary`, for the batch's accounts, 35 months either side.
    """
    first, last = context.partition_key_range.start, context.partition_key_range.end
    watermark = lakehouse.watermark()
    records = _fresh(case3_backfill.unionByName(new_and_forward_accounts), watermark)
    summary_keys = (
        lakehouse.read(lakehouse.summary_table)
        .where(F.col("rpt_as_of_mo").between(add_months(first, -REACH), add_months(last, REACH)))
        .select("cons_acct_key", "rpt_as_of_mo", "soft_del_cd")
    )
    joined = join_windows(records, summary_keys).persist(StorageLevel.MEMORY_AND_DISK)
    counts = joined.groupBy("case_type").agg(F.count("*").alias("n"), F.sum(F.size("target_mos")).alias("later"))
    by_case = {r["case_type"]: r for r in counts.collect()}
    return dg.Output(
        joined,
        metadata={
            **{f"case_{c}": by_case[c]["n"] if c in by_case else 0 for c in CASES},
            "later_rows_reached": sum(int(r["later"] or 0) for r in by_case.values()),
        },
    )


@_spark_asset(ddl(PATCHES))
def updated_histories(joined_windows: DataFrame) -> DataFrame:
    """What each month's records decide: one patch per summary row reached, at that month's position."""
    return history_patches(joined_windows)


@_spark_asset(
    None,
    ins={
        "updated_histories": dg.AssetIn(partition_mapping=HISTORY_WINDOW),
        "classified_accounts": dg.AssetIn(),
    },
)
def summary_backfilled(
    context: AssetExecutionContext,
    lakehouse: Lakehouse,
    updated_histories: DataFrame,
    classified_accounts: DataFrame,
) -> dg.MaterializeResult:
    """summary and latest_summary with every patch of late months s-35 … s applied, committed atomically."""
    first, last = context.partition_key_range.start, context.partition_key_range.end
    watermark = lakehouse.watermark()
    applied_through = _fresh(classified_accounts, watermark).agg(F.max("base_ts")).collect()[0][0]
    if applied_through is None:
        context.log.info("nothing to apply: no unapplied records in the selected months")
        return dg.MaterializeResult(metadata={"summary_rows_written": 0, "latest_rows_written": 0})
    patches = _fresh(updated_histories, watermark).where(F.col("target_mo").between(first, last))
    snapshots = {t: lakehouse.snapshot_id(t) for t in (lakehouse.summary_table, lakehouse.latest_table)}
    accounts = patches.select("cons_acct_key").distinct()
    window_rows = (
        lakehouse.read(lakehouse.summary_table, snapshots[lakehouse.summary_table])
        .where(F.col("rpt_as_of_mo").between(add_months(first, -REACH), last))
        .join(accounts, "cons_acct_key", "left_semi")
    )
    latest_old = lakehouse.read(lakehouse.latest_table, snapshots[lakehouse.latest_table]).join(
        accounts, "cons_acct_key", "left_semi"
    )
    updated = apply_patches(patches, window_rows, latest_old).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written = written_rows(updated)
        commit = lakehouse.commit(
            written, changed_latest_rows(updated), (first, last), applied_through, context.run.run_id
        )
        per_month = written.groupBy("rpt_as_of_mo").count().orderBy("rpt_as_of_mo").collect()
    finally:
        updated.unpersist()
    rows = sum(r["count"] for r in per_month)
    context.log.info(f"committed summary snapshot {commit.summary_snapshot}: {rows} rows in {len(per_month)} months")
    return dg.MaterializeResult(
        metadata={
            "applied_through": str(applied_through),
            "summary_rows_written": rows,
            "months_touched": len(per_month),
            "summary_snapshot_id": str(commit.summary_snapshot),
            "latest_snapshot_id": str(commit.latest_snapshot),
            "rows_by_month": _table(per_month, ["rpt_as_of_mo", "count"]),
        }
    )
