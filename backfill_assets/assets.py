"""The backfill asset graph: new records → cases → reach → patches → summary (one Spark job per run)."""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at definition time.

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.checks import concurrently, gate, result, spec
from backfill_assets.contracts.models import rejections
from backfill_assets.contracts.tables import (
    ACCOUNTS_ALL,
    CASES,
    CLASSIFIED,
    HISTORY_LENGTH,
    JOINED,
    MONTH_PATTERN,
    PATCHES,
    ddl,
)
from backfill_assets.contracts.validation import check_frame, check_structure, latest_disagreements
from backfill_assets.faults import fault_point
from backfill_assets.io_manager import partition_filter
from backfill_assets.partitions import FIRST_MONTH, HISTORY_WINDOW, MONTHLY
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.options import BackfillOptions
from backfill_assets.resources.quality import DataQuality
from backfill_assets.transforms.apply import apply_patches, changed_latest_rows, rows_after, rows_read, written_rows
from backfill_assets.transforms.classify import classify, winners
from backfill_assets.transforms.histories import history_patches
from backfill_assets.transforms.latest import accounts_without_active_row, latest_outside
from backfill_assets.transforms.months import add_months
from backfill_assets.transforms.reach import base_keys, forward_latest, rows_at, summary_rows_needed
from backfill_assets.transforms.rejects import accepted, rejects, tag, unseen
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


def _table(rows: list[Any], columns: list[str]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


def _by_month(counts: dict[str, dict[str, int]], columns: list[str]) -> dg.MetadataValue:
    """One row per month, one column per count (zeros shown): how a batch spreads over the months."""
    rows = [{"rpt_as_of_mo": m, **{c: counts[m].get(c, 0) for c in columns}} for m in sorted(counts)]
    return _table(rows, ["rpt_as_of_mo", *columns])


def _seconds(started: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(time.monotonic() - started, 2))


def _partition_months(pending: list[str], last_key: str) -> list[str]:
    """The pending months that are partitions (a record of any other month is rejected)."""
    return [m for m in pending if re.match(MONTH_PATTERN, m) and FIRST_MONTH <= m <= last_key]


def required_range(pending: list[str], last_key: str) -> tuple[str, str] | None:
    """The partitions a run must cover to apply every pending month and the 35 months each reaches.

    Pending months that are no partition (malformed, out of range) still get a run, over the last
    month, so that their records are rejected and reported.
    """
    months = _partition_months(pending, last_key)
    if not months:
        return (last_key, last_key) if pending else None
    return months[0], min(add_months(months[-1], REACH), last_key)


def _check_selection(pending: list[str], keys: list[str], last_key: str) -> None:
    needed = required_range(pending, last_key)
    if needed is None:
        return
    outside = [m for m in _partition_months(pending, last_key) if m not in keys]
    if outside or keys[-1] < needed[1]:
        raise dg.Failure(
            f"accounts_all has unapplied records in month(s) {', '.join(pending[:6])}"
            f"{' …' if len(pending) > 6 else ''}; a run must cover partitions {needed[0]}...{needed[1]}"
            f" (selected {keys[0]}...{keys[-1]}). Select that range or use `backfill-assets run`."
        )


@contextmanager
def _run_lock(context: AssetExecutionContext, lakehouse: Lakehouse) -> Iterator[None]:
    """Hold the run lock (`Lakehouse.begin_run`); a failure ends the run FAILED, its tables restored."""
    run_id = context.run.run_id
    lakehouse.begin_run(run_id)
    try:
        yield
    except Exception as error:
        lakehouse.end_run(run_id, ok=False, error=(str(error).strip() or type(error).__name__).splitlines()[0])
        raise


SOURCE_CHECK = "source_records_valid"
LATEST_CHECK = "latest_summary_valid"
OUTPUT_CHECK = "output_valid"


def _output_check(asset: str) -> dg.AssetCheckSpec:
    return spec(OUTPUT_CHECK, asset, f"Columns and types of the output match the {asset} model (pandera).")


@_spark_asset(
    ddl(CLASSIFIED),
    deps=[accounts_all],
    check_specs=[
        spec(
            SOURCE_CHECK,
            "classified_accounts",
            "Every new accounts_all record (any month): key, YYYY-MM month within the partitions and not after"
            " its base_ts, base_ts present and not in the future. A record that breaks a rule is rejected (WARN,"
            " kept in the rejects table); above the DataQuality limits the run fails before writing anything.",
        ),
        spec(
            LATEST_CHECK,
            "classified_accounts",
            "The latest_summary rows of the batch's accounts: one per account, and the summary row rules.",
        ),
        spec(OUTPUT_CHECK, "classified_accounts", "One row per account and month, a known case, months valid."),
    ],
)
def classified_accounts(
    context: AssetExecutionContext, lakehouse: Lakehouse, quality: DataQuality, options: BackfillOptions
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """Unapplied records of these months, one winner per account and month, in summary values, with their case.

    New records that break a rule of SPEC §7 are rejected: recorded in the rejects table (rolled back
    if the run fails) and left out, so that they stop neither this run nor the next.
    """
    with _run_lock(context, lakehouse):
        started, keys = time.monotonic(), context.partition_keys
        fault_point("reading")
        watermark = options.watermark(lakehouse)
        # the batch, read once: the source check, the latest rows and the winners all use it; a load's
        # many small files go into as many partitions as a shuffle has, not a task per file for each use
        tasks = int(lakehouse.spark.session.conf.get("spark.sql.shuffle.partitions") or 1)
        unapplied = options.unapplied(lakehouse.read(lakehouse.accounts_table), watermark, with_null_base_ts=True)
        structure = check_structure(unapplied, "accounts_all")
        if not structure.passed:  # the rules need every column
            yield from gate(result(SOURCE_CHECK, "classified_accounts", [structure]))
        bounds, columns = quality.bounds(), ACCOUNTS_ALL.fieldNames()
        batch = unseen(
            tag(unapplied.coalesce(tasks), rejections(bounds), columns), lakehouse.read(lakehouse.rejects_table)
        ).persist(StorageLevel.MEMORY_AND_DISK)
        latest: DataFrame | None = None
        try:
            source = quality.judge_rejects(check_frame(batch, "accounts_all", bounds))
            rejected = source.rejected
            yield from gate(
                result(
                    SOURCE_CHECK,
                    "classified_accounts",
                    [source],
                    {"rejected_records": sum(rejected.values()), "rejected_by_rule": dg.MetadataValue.json(rejected)},
                )
            )
            pending = options.pending_months(lakehouse, watermark)
            _check_selection(pending, keys, MONTHLY.get_last_partition_key() or keys[-1])
            records = accepted(batch).where(partition_filter(keys))
            latest = (
                lakehouse.read(lakehouse.latest_table)
                .join(records.select("cons_acct_key"), "cons_acct_key", "left_semi")
                .persist(StorageLevel.MEMORY_AND_DISK)
            )
            yield from gate(result(LATEST_CHECK, "classified_accounts", [check_frame(latest, "latest_summary")]))
            classified = classify(winners(records), latest).persist(StorageLevel.MEMORY_AND_DISK)
            yield from gate(
                result(OUTPUT_CHECK, "classified_accounts", [check_frame(classified, "classified_accounts")])
            )
            if rejected:
                lakehouse.record_rejects(rejects(batch, context.run.run_id, columns))
        finally:
            for frame in (batch, latest):
                if frame is not None:
                    frame.unpersist()
        counts = classified.groupBy("rpt_as_of_mo", "case_type").count().collect()
        by_case = {c: sum(r["count"] for r in counts if r["case_type"] == c) for c in CASES}
        by_month: dict[str, dict[str, int]] = {}
        for r in counts:
            by_month.setdefault(r["rpt_as_of_mo"], {})[r["case_type"]] = r["count"]
        context.log.info(
            f"watermark {watermark}; pending months {pending}; records by case {by_case}; rejected {rejected}"
        )
        yield dg.Output(
            classified,
            metadata={
                "watermark": str(watermark),
                "records": sum(by_case.values()),
                **{f"case_{c}": n for c, n in by_case.items()},
                "months_with_records": len(by_month),
                "cases_by_month": _by_month(by_month, list(CASES)),
                "rejected_records": sum(rejected.values()),
                "rejected_by_rule": dg.MetadataValue.json(rejected),
                "rejects_table": lakehouse.name(lakehouse.rejects_table),
                "duration_s": _seconds(started),
            },
        )


@_spark_asset(ddl(CLASSIFIED), check_specs=[_output_check("case3_backfill")])
def case3_backfill(classified_accounts: DataFrame) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """Case III: records of known accounts at or before their latest month (late, corrections, deletions)."""
    out = classified_accounts.where(F.col("case_type") == "III")
    yield from _with_structure(out, "case3_backfill", "classified_accounts")


@_spark_asset(ddl(CLASSIFIED), check_specs=[_output_check("new_and_forward_accounts")])
def new_and_forward_accounts(
    classified_accounts: DataFrame,
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """Cases I, II and IV: new accounts, bulk history loads and months after an account's latest."""
    out = classified_accounts.where(F.col("case_type") != "III")
    yield from _with_structure(out, "new_and_forward_accounts", "classified_accounts")


def _with_structure(
    df: DataFrame, asset: str, model: str, metadata: dict[str, Any] | None = None
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """The output, after its columns and types are checked against its model (no Spark job)."""
    yield from gate(result(OUTPUT_CHECK, asset, [check_structure(df, model)]))
    yield dg.Output(df, metadata=metadata)


@_spark_asset(ddl(JOINED), check_specs=[_output_check("joined_windows")])
def joined_windows(
    context: AssetExecutionContext,
    lakehouse: Lakehouse,
    options: BackfillOptions,
    case3_backfill: DataFrame,
    new_and_forward_accounts: DataFrame,
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """Each record with the summary rows it reaches: its own, its later rows, and the row it inherits from.

    Reads only key and delete flag: of `summary` 35 months either side for accounts with late records,
    of `latest_summary` for the others (`transforms.reach`).
    """
    first, last = context.partition_key_range.start, context.partition_key_range.end
    records = options.unapplied(case3_backfill.unionByName(new_and_forward_accounts), options.watermark(lakehouse))
    key = ["cons_acct_key", "rpt_as_of_mo", "soft_del_cd"]
    summary_keys = summary_rows_needed(
        lakehouse.read(lakehouse.summary_table).select(*key),
        records,
        (add_months(first, -REACH), add_months(last, REACH)),
        (first, last),
    ).unionByName(forward_latest(lakehouse.read(lakehouse.latest_table).select(*key), records))
    joined = join_windows(records, summary_keys).persist(StorageLevel.MEMORY_AND_DISK)
    counts = joined.groupBy("case_type").agg(F.count("*").alias("n"), F.sum(F.size("target_mos")).alias("later"))
    by_case = {r["case_type"]: r for r in counts.collect()}
    metadata = {
        **{f"case_{c}": by_case[c]["n"] if c in by_case else 0 for c in CASES},
        "later_rows_reached": sum(int(r["later"] or 0) for r in by_case.values()),
    }
    yield from _with_structure(joined, "joined_windows", "joined_windows", metadata)


@_spark_asset(ddl(PATCHES), check_specs=[_output_check("updated_histories")])
def updated_histories(joined_windows: DataFrame) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """What each month's records decide: one patch per summary row reached, at that month's position."""
    yield from _with_structure(history_patches(joined_windows), "updated_histories", "updated_histories")


WINDOW_CHECK = "summary_window_valid"
AGREES_CHECK = "latest_summary_agrees"
ROWS_CHECK = "summary_rows_valid"
LATEST_ROWS_CHECK = "latest_rows_valid"
_SUMMARY_RULES = "keys and months, one row per key, 36-position histories, grid = rendering, rating, no sentinels"


def _latest_rows_out_of_view(
    summary: DataFrame, window_rows: DataFrame, latest_old: DataFrame, records: DataFrame, months: tuple[str, str]
) -> DataFrame | None:
    """The summary rows, not among `window_rows`, that become the latest of accounts the run leaves
    without an active row in view (`transforms.latest`), persisted; None when there are none.

    `months`: the run's range, whose rows of late accounts the run reads in full. Rare (a run that
    deletes every active row it sees of an account), so the cheap question comes first; the rows are
    then read by key from the months they lie in.
    """
    key = ["cons_acct_key", "rpt_as_of_mo", "soft_del_cd"]
    orphans = accounts_without_active_row(
        window_rows.select(*key).unionByName(latest_old.select(*key)), records
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        keys = latest_outside(summary.select(*key), orphans, months).collect() if orphans.take(1) else []
    finally:
        orphans.unpersist()
    if not keys:
        return None
    wanted = summary.sparkSession.createDataFrame(keys, "cons_acct_key bigint, rpt_as_of_mo string")
    in_months = summary.where(F.col("rpt_as_of_mo").isin(*sorted({k["rpt_as_of_mo"] for k in keys})))
    return in_months.join(wanted, ["cons_acct_key", "rpt_as_of_mo"], "left_semi").persist(StorageLevel.MEMORY_AND_DISK)


@_spark_asset(
    None,
    ins={
        "updated_histories": dg.AssetIn(partition_mapping=HISTORY_WINDOW),
        "classified_accounts": dg.AssetIn(),
    },
    check_specs=[
        spec(
            WINDOW_CHECK, "summary_backfilled", f"The summary rows the run reads (patched accounts): {_SUMMARY_RULES}."
        ),
        spec(
            AGREES_CHECK,
            "summary_backfilled",
            "Each latest_summary row the run reads equals the newest active summary row of its account.",
        ),
        spec(ROWS_CHECK, "summary_backfilled", f"The summary rows about to be committed: {_SUMMARY_RULES}."),
        spec(
            LATEST_ROWS_CHECK,
            "summary_backfilled",
            "The latest_summary rows about to be committed, each equal to the newest active summary row after the run.",
        ),
    ],
)
def summary_backfilled(
    context: AssetExecutionContext,
    lakehouse: Lakehouse,
    quality: DataQuality,
    options: BackfillOptions,
    updated_histories: DataFrame,
    classified_accounts: DataFrame,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """summary and latest_summary with every patch of late months s-35 … s applied, committed atomically.

    What it reads is checked before anything is written, and what it would write before it commits.
    """
    with _run_lock(context, lakehouse):
        started = time.monotonic()
        first, last = context.partition_key_range.start, context.partition_key_range.end
        watermark = options.watermark(lakehouse)
        records = options.unapplied(classified_accounts, watermark)
        applied_through = records.agg(F.max("base_ts")).collect()[0][0]
        if applied_through is None:
            context.log.info("nothing to apply: no unapplied records in the selected months")
            yield dg.MaterializeResult(metadata={"summary_rows_written": 0, "latest_rows_written": 0})
            for name in (WINDOW_CHECK, AGREES_CHECK, ROWS_CHECK, LATEST_ROWS_CHECK):
                yield result(name, "summary_backfilled", [])
            lakehouse.end_run(context.run.run_id, ok=True)
            return
        patches = options.unapplied(updated_histories, watermark).where(F.col("target_mo").between(first, last))
        snapshots = {t: lakehouse.snapshot_id(t) for t in (lakehouse.summary_table, lakehouse.latest_table)}
        window = (add_months(first, -REACH), last)
        summary = lakehouse.read(lakehouse.summary_table, snapshots[lakehouse.summary_table])
        in_range = (
            summary_rows_needed(summary, records, (first, last), (first, last))
            .unionByName(rows_at(summary, base_keys(patches, records), (window[0], add_months(first, -1))))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        latest_old = (
            lakehouse.read(lakehouse.latest_table, snapshots[lakehouse.latest_table])
            .join(records.select("cons_acct_key"), "cons_acct_key", "left_semi")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        updated = out_of_view = None
        try:
            out_of_view = _latest_rows_out_of_view(summary, in_range, latest_old, records, (first, last))
            window_rows = in_range if out_of_view is None else in_range.unionByName(out_of_view)
            updated = apply_patches(patches, window_rows, latest_old).persist(StorageLevel.MEMORY_AND_DISK)
            summary_read, latest_read = rows_read(updated)
            window_report, agrees_report = concurrently(
                lambda: check_frame(window_rows, "summary"),
                lambda: latest_disagreements(latest_read, summary_read, window),
            )
            yield from gate(
                result(WINDOW_CHECK, "summary_backfilled", [window_report]),
                result(AGREES_CHECK, "summary_backfilled", [agrees_report]),
            )
            context.log.info("read checks passed; checking the rows to commit")
            written, latest_new = written_rows(updated), changed_latest_rows(updated)
            summary_after, latest_after = rows_after(updated)
            written_report, *latest_reports = concurrently(
                lambda: check_frame(written, "summary"),
                lambda: check_frame(latest_new, "latest_summary"),
                lambda: latest_disagreements(latest_after, summary_after, window),
            )
            yield from gate(
                result(ROWS_CHECK, "summary_backfilled", [written_report]),
                result(LATEST_ROWS_CHECK, "summary_backfilled", latest_reports),
            )
            context.log.info("write checks passed; committing summary, then latest_summary")
            commit = lakehouse.commit(
                written if written_report.rows_read else None,  # no empty snapshots: the checks counted the rows
                latest_new if latest_reports[0].rows_read else None,
                (first, last),
                applied_through,
                context.run.run_id,
            )
            lakehouse.end_run(context.run.run_id, ok=True)
        finally:
            for df in (updated, in_range, latest_old, out_of_view):
                if df is not None:
                    df.unpersist()
        per_month: dict[str, dict[str, int]] = {}
        for name, report in (("rows_read", window_report), ("rows_written", written_report)):
            for month, n in report.rows_by_month.items():
                per_month.setdefault(month, {})[name] = n
        rows = sum(m.get("rows_written", 0) for m in per_month.values())
        touched = sum(1 for m in per_month.values() if m.get("rows_written"))
        context.log.info(f"committed summary snapshot {commit.summary_snapshot}: {rows} rows in {touched} months")
        yield dg.MaterializeResult(
            metadata={
                "applied_through": str(applied_through),
                "summary_rows_read": sum(m.get("rows_read", 0) for m in per_month.values()),
                "summary_rows_written": rows,
                "latest_rows_written": commit.latest_rows_written,
                "months_touched": touched,
                "summary_snapshot_id": str(commit.summary_snapshot),
                "latest_snapshot_id": str(commit.latest_snapshot),
                "rows_by_month": _by_month(per_month, ["rows_read", "rows_written"]),
                "duration_s": _seconds(started),
            }
        )
