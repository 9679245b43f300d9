"""The backfill asset graph: new records → cases → reach → patches → summary (one run per month range)."""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at definition time.

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.backfill import Batch, SummaryBackfill
from backfill_assets.checks import gate, md_table, result, spec
from backfill_assets.contracts.tables import CASES
from backfill_assets.contracts.validation import check_structure
from backfill_assets.faults import fault_point
from backfill_assets.io_manager import column_schema
from backfill_assets.operations.diff import column_changes
from backfill_assets.partitions import MONTHLY
from backfill_assets.planning import selection_problem
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.options import BackfillOptions
from backfill_assets.resources.publish import Commit, branch, tag
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.runlog import begin_run, end_run
from backfill_assets.transforms.histories import history_patches
from backfill_assets.transforms.months import add_months
from backfill_assets.transforms.reach import forward_latest, summary_rows_needed
from backfill_assets.transforms.windows import join_windows

accounts_all = dg.AssetSpec(
    "accounts_all",
    partitions_def=MONTHLY,
    group_name="sources",
    kinds={"iceberg"},
    description="Account records as lenders deliver them, late ones included (docs/spec.md §2.1).",
)


def _spark_asset(contract: str | None, **kwargs: Any) -> Any:
    """Shared shape of the graph's assets: monthly, one run for a whole range, stored in Iceberg
    (`contract`: the table of the layout whose columns the IO manager gives the stored asset)."""
    return dg.asset(
        partitions_def=MONTHLY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="spark_io",
        group_name="backfill",
        kinds={"spark", "iceberg"},
        metadata={"contract": contract} if contract else None,
        **kwargs,
    )


def _by_month(counts: dict[str, dict[str, int]], columns: list[str]) -> dg.MetadataValue:
    """One row per month, one column per count (zeros shown): how a batch spreads over the months."""
    return md_table(["rpt_as_of_mo", *columns], [[m, *(counts[m].get(c, 0) for c in columns)] for m in sorted(counts)])


def _seconds(started: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(time.monotonic() - started, 2))


@contextmanager
def _run_lock(context: AssetExecutionContext, lakehouse: Lakehouse) -> Iterator[None]:
    """Hold the run lock (`runlog.begin_run`); a failure ends the run FAILED, its tables restored."""
    run_id = context.run.run_id
    begin_run(lakehouse, run_id)
    try:
        yield
    except Exception as error:
        end_run(lakehouse, run_id, ok=False, error=(str(error).strip() or type(error).__name__).splitlines()[0])
        raise


SOURCE_CHECK = "source_records_valid"
LATEST_CHECK = "latest_summary_valid"
OUTPUT_CHECK = "output_valid"


def _output_check(asset: str) -> dg.AssetCheckSpec:
    return spec(OUTPUT_CHECK, asset, f"Columns and types of the output match the {asset} model (pandera).")


@_spark_asset(
    "classified_accounts",
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

    New records that break a rule of docs/spec.md §7 are rejected: recorded in the rejects table
    (rolled back if the run fails) and left out, so that they stop neither this run nor the next.
    """
    started, keys, last = time.monotonic(), context.partition_keys, MONTHLY.get_last_partition_key()
    with _run_lock(context, lakehouse), Batch(lakehouse, options, quality, keys) as batch:
        fault_point("reading")
        if not (structure := batch.structure()).passed:
            yield from gate(result(SOURCE_CHECK, "classified_accounts", [structure]))
        source = batch.source()
        yield from gate(result(SOURCE_CHECK, "classified_accounts", [source], _rejected_metadata(source.rejected)))
        if problem := selection_problem(batch.pending(), keys, last or keys[-1], batch.layout.reach):
            raise dg.Failure(problem)
        latest, classified = batch.classify(context.run.run_id)
        yield from gate(result(LATEST_CHECK, "classified_accounts", [latest]))
        yield from gate(result(OUTPUT_CHECK, "classified_accounts", [classified]))
    yield dg.Output(batch.classified, metadata=_classified_metadata(batch, source.rejected, started))


def _classified_metadata(batch: Batch, rejected: dict[str, int], started: float) -> dict[str, Any]:
    """Records per case and per month and case, rejects per rule."""
    counts = batch.counts()
    by_case = {c: sum(counts.get(c, {}).values()) for c in CASES}
    by_month: dict[str, dict[str, int]] = {}
    for case, months in counts.items():
        for month, n in months.items():
            by_month.setdefault(month, {})[case] = n
    return {
        "watermark": str(batch.watermark),
        "records": sum(by_case.values()),
        **{f"case_{c}": n for c, n in by_case.items()},
        "months_with_records": len(by_month),
        "cases_by_month": _by_month(by_month, list(CASES)),
        **_rejected_metadata(rejected),
        "rejects_table": batch.lakehouse.name(batch.lakehouse.rejects_table),
        "duration_s": _seconds(started),
    }


def _rejected_metadata(rejected: dict[str, int]) -> dict[str, Any]:
    return {"rejected_records": sum(rejected.values()), "rejected_by_rule": dg.MetadataValue.json(rejected)}


@_spark_asset("classified_accounts", check_specs=[_output_check("case3_backfill")])
def case3_backfill(
    lakehouse: Lakehouse, classified_accounts: DataFrame
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """Case III: records of known accounts at or before their latest month (late, corrections, deletions)."""
    out = classified_accounts.where(F.col("case_type") == "III")
    yield from _with_structure(lakehouse, out, "case3_backfill", "classified_accounts")


@_spark_asset("classified_accounts", check_specs=[_output_check("new_and_forward_accounts")])
def new_and_forward_accounts(
    lakehouse: Lakehouse, classified_accounts: DataFrame
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """Cases I, II and IV: new accounts, bulk history loads and months after an account's latest."""
    out = classified_accounts.where(F.col("case_type") != "III")
    yield from _with_structure(lakehouse, out, "new_and_forward_accounts", "classified_accounts")


def _with_structure(
    lakehouse: Lakehouse, df: DataFrame, asset: str, model: str, metadata: dict[str, Any] | None = None
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """The output, after its columns and types are checked against its model (no Spark job)."""
    yield from gate(result(OUTPUT_CHECK, asset, [check_structure(df, model, lakehouse.layout)]))
    yield dg.Output(df, metadata=metadata)


@_spark_asset("joined_windows", check_specs=[_output_check("joined_windows")])
def joined_windows(
    context: AssetExecutionContext,
    lakehouse: Lakehouse,
    options: BackfillOptions,
    case3_backfill: DataFrame,
    new_and_forward_accounts: DataFrame,
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """Each record with the summary rows it reaches: its own, its later rows, and the row it inherits from.

    Reads only key and delete flag: of `summary` N − 1 months either side for accounts with late records,
    of `latest_summary` for the others (`transforms.reach`).
    """
    first, last = context.partition_key_range.start, context.partition_key_range.end
    records = options.unapplied(case3_backfill.unionByName(new_and_forward_accounts), options.watermark(lakehouse))
    key, reach = ["cons_acct_key", "rpt_as_of_mo", "soft_del_cd"], lakehouse.layout.reach
    summary_keys = summary_rows_needed(
        lakehouse.read(lakehouse.summary_table).select(*key),
        records,
        (add_months(first, -reach), add_months(last, reach)),
        (first, last),
    ).unionByName(forward_latest(lakehouse.read(lakehouse.latest_table).select(*key), records))
    joined = join_windows(records, summary_keys, reach).persist(lakehouse.spark.storage_level)
    counts = joined.groupBy("case_type").agg(F.count("*").alias("n"), F.sum(F.size("target_mos")).alias("later"))
    by_case = {r["case_type"]: r for r in counts.collect()}
    metadata = {
        **{f"case_{c}": by_case[c]["n"] if c in by_case else 0 for c in CASES},
        "later_rows_reached": sum(int(r["later"] or 0) for r in by_case.values()),
    }
    yield from _with_structure(lakehouse, joined, "joined_windows", "joined_windows", metadata)


@_spark_asset("updated_histories", check_specs=[_output_check("updated_histories")])
def updated_histories(
    lakehouse: Lakehouse, joined_windows: DataFrame
) -> Iterator[dg.Output[DataFrame] | dg.AssetCheckResult]:
    """What each month's records decide: one patch per summary row reached, at that month's position."""
    patches = history_patches(joined_windows, lakehouse.layout)
    yield from _with_structure(lakehouse, patches, "updated_histories", "updated_histories")


WINDOW_CHECK = "summary_window_valid"
AGREES_CHECK = "latest_summary_agrees"
ROWS_CHECK = "summary_rows_valid"
LATEST_ROWS_CHECK = "latest_rows_valid"
ASSET = "summary_backfilled"
_SUMMARY_RULES = "keys and months, one row per key, N-position histories, grid = rendering, rating, no sentinels"


@_spark_asset(
    None,
    ins={"updated_histories": dg.AssetIn(), "classified_accounts": dg.AssetIn()},
    check_specs=[
        spec(
            WINDOW_CHECK,
            "summary_backfilled",
            "The summary rows the run reads: the late accounts' scalars from the run's first month on (their"
            f" histories are rebuilt, not read) and each account's base row whole: {_SUMMARY_RULES}.",
        ),
        spec(
            AGREES_CHECK,
            "summary_backfilled",
            "Each latest_summary row the run reads equals the newest active summary row of its account.",
        ),
        spec(
            ROWS_CHECK,
            "summary_backfilled",
            f"The summary rows the run wrote: {_SUMMARY_RULES}; its branch holds each once, from the run's MERGE.",
        ),
        spec(
            LATEST_ROWS_CHECK,
            "summary_backfilled",
            "The latest_summary rows the run wrote (its branch holds each once, from the run's MERGE), each equal"
            " to the newest active summary row after the run.",
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
    """summary and latest_summary with the rows the batch changes rewritten, by write-audit-publish.

    The rows of each late account from its first record's month on are rebuilt from the records'
    own rows (`updated_histories` at position 0), the stored scalars and one base row per account
    (`transforms.rewrite`); the stored arrays of the rows it rewrites are not read.

    What it reads is checked before anything is written. It writes to a branch of its own on each
    table, checks what the branches hold, then fast-forwards `main` of summary, then of
    latest_summary, and tags both `run-<run id>`. A reader of `main` sees nothing of a run before
    its checks passed, and the new summary beside the old latest_summary only between the two
    fast-forwards (metadata commits); at a run tag the two tables always belong together.
    """
    started, months, run_id = time.monotonic(), context.partition_key_range, context.run.run_id
    with (
        _run_lock(context, lakehouse),
        SummaryBackfill(lakehouse, options, updated_histories, classified_accounts, (months.start, months.end)) as run,
    ):
        if run.applied_through is None:
            context.log.info("nothing to apply: no unapplied records in the selected months")
            yield dg.MaterializeResult(metadata={"summary_rows_written": 0, "latest_rows_written": 0})
            yield from (result(name, ASSET, []) for name in (WINDOW_CHECK, AGREES_CHECK, ROWS_CHECK, LATEST_ROWS_CHECK))
            end_run(lakehouse, run_id, ok=True, applied=run.applied())
            return
        read, agrees = run.read()
        yield from gate(result(WINDOW_CHECK, ASSET, [read]), result(AGREES_CHECK, ASSET, [agrees]))
        context.log.info(f"read checks passed; writing to branch {branch(run_id)} of summary and latest_summary")
        run.write(run_id)
        written, latest = run.check_writes(run_id)
        yield from gate(result(ROWS_CHECK, ASSET, [written]), result(LATEST_ROWS_CHECK, ASSET, latest))
        context.log.info("write checks passed; publishing summary, then latest_summary")
        commit = run.publish(run_id)
        end_run(lakehouse, run_id, ok=True, applied=run.applied())
        metadata = _summary_metadata(context, run, commit, started)  # from the cached rows: inside the block
    yield dg.MaterializeResult(metadata=metadata)


def _summary_metadata(
    context: AssetExecutionContext, run: SummaryBackfill, commit: Commit, started: float
) -> dict[str, Any]:
    """Rows read and written (per month), the snapshots published and the run's tag, the first rows changed, and
    the summary's columns under the layout in force (the asset's Columns tab)."""
    per_month = run.rows_by_month()
    rows = sum(m.get("rows_written", 0) for m in per_month.values())
    touched = sum(1 for m in per_month.values() if m.get("rows_written"))
    context.log.info(
        f"published summary snapshot {commit.summary_snapshot}: {rows} rows in {touched} months;"
        f" tagged {tag(context.run.run_id)}"
    )
    return {
        "applied_through": str(run.applied_through),
        "summary_rows_read": sum(m.get("rows_read", 0) for m in per_month.values()),
        "summary_rows_written": rows,
        "latest_rows_written": commit.latest_rows_written,
        "months_touched": touched,
        "summary_snapshot_id": str(commit.summary_snapshot),
        "latest_snapshot_id": str(commit.latest_snapshot),
        "tag": tag(context.run.run_id),
        "rows_by_month": _by_month(per_month, ["rows_read", "rows_written"]),
        "first_changed_rows": md_table(
            ["cons_acct_key", "rpt_as_of_mo", "change", "old → new"],
            [
                [c.cons_acct_key, c.rpt_as_of_mo, c.change, "; ".join(column_changes(c)[:8])]
                for c in run.first_changes()
            ],
        ),
        "duration_s": _seconds(started),
        "layout": run.lakehouse.layout_file or "default (docs/spec.md §2)",
        "dagster/column_schema": column_schema(run.layout.summary),
    }
