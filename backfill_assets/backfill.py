"""What a run decides, free of Dagster: the batch it applies (`Batch`) and the rows it commits (`SummaryBackfill`).

Each is a sequence of steps the asset calls between its checks, so that nothing is computed past a
check that failed; both hold the frames they cache and release them when the `with` block ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Self, TypeVar

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from backfill_assets.contracts.models import rejections
from backfill_assets.contracts.tables import ACCOUNTS_ALL, CASES
from backfill_assets.contracts.validation import Problem, Report, check_frame, check_structure, latest_disagreements
from backfill_assets.operations.diff import RowChange, row_change
from backfill_assets.planning import REACH
from backfill_assets.resources import publish
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.options import BackfillOptions
from backfill_assets.resources.publish import Commit
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.runlog import Applied, Published, publish_run
from backfill_assets.transforms.apply import apply_patches, changed_latest_rows, rows_after, rows_read, written_rows
from backfill_assets.transforms.classify import classify, winners
from backfill_assets.transforms.latest import accounts_without_active_row, latest_outside
from backfill_assets.transforms.months import add_months, in_months
from backfill_assets.transforms.reach import base_keys, rows_at, summary_rows_needed
from backfill_assets.transforms.rejects import accepted, rejects, tag, unseen

A, M = "cons_acct_key", "rpt_as_of_mo"
_KEY = [A, M, "soft_del_cd"]
T = TypeVar("T")


def concurrently(*checks: Callable[[], T]) -> list[T]:
    """Evaluate independent checks at once, in the order given.

    Each is a few Spark queries whose planning and small final stages leave the executors idle;
    submitted together, one check's tasks fill another's gaps (a run's checks read cached rows, so
    they share no work left to do).
    """
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        return [future.result() for future in [pool.submit(check) for check in checks]]


class _Cached:
    """Frames persisted for the steps of one asset, released together."""

    def __init__(self) -> None:
        self._frames: list[DataFrame] = []

    def _cache(self, frame: DataFrame) -> DataFrame:
        self._frames.append(frame.persist(StorageLevel.MEMORY_AND_DISK))
        return self._frames[-1]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for frame in self._frames:
            frame.unpersist()


class Batch(_Cached):
    """The new records of the selected months: checked, bad ones set aside, the rest classified (§5, §7)."""

    def __init__(self, lakehouse: Lakehouse, options: BackfillOptions, quality: DataQuality, keys: list[str]) -> None:
        super().__init__()
        self.lakehouse, self.options, self.quality, self.keys = lakehouse, options, quality, keys
        self.watermark = options.watermark(lakehouse)
        self.unapplied = options.unapplied(
            lakehouse.read(lakehouse.accounts_table), self.watermark, with_null_base_ts=True
        )

    def structure(self) -> Report:
        """Columns and types of accounts_all (the rules need every column): no Spark job."""
        return check_structure(self.unapplied, "accounts_all")

    def source(self) -> Report:
        """The source rules counted over the new records, each tagged with the first rule it breaks.

        The batch is read once: the source check, the latest rows and the winners all use it; a
        load's many small files go into as many partitions as a shuffle has, not a task per file.
        """
        session = self.lakehouse.spark.session
        tasks = int(session.conf.get("spark.sql.shuffle.partitions") or 1)
        bounds = self.quality.bounds()
        tagged = tag(self.unapplied.coalesce(tasks), rejections(bounds), ACCOUNTS_ALL.fieldNames())
        self.batch = self._cache(unseen(tagged, self.lakehouse.read(self.lakehouse.rejects_table)))
        self.report = self.quality.judge_rejects(check_frame(self.batch, "accounts_all", bounds))
        return self.report

    def pending(self) -> list[str]:
        return self.options.pending_months(self.lakehouse, self.watermark)

    def latest(self) -> Report:
        """The latest_summary rows of the accounts of the accepted records of the selected months."""
        self.records = accepted(self.batch).where(in_months(self.keys))
        latest = self.lakehouse.read(self.lakehouse.latest_table).join(self.records.select(A), A, "left_semi")
        self.latest_rows = self._cache(latest)
        return check_frame(self.latest_rows, "latest_summary")

    def classify(self) -> Report:
        """One winner per account and month, in summary values, with its case (kept: it is the output)."""
        self.classified = classify(winners(self.records), self.latest_rows).persist(StorageLevel.MEMORY_AND_DISK)
        return check_frame(self.classified, "classified_accounts")

    def record_rejects(self, run_id: str) -> None:
        """Append the rejected records to the rejects table (under the run lock: rolled back on failure)."""
        if self.report.rejected:
            self.lakehouse.record_rejects(rejects(self.batch, run_id, ACCOUNTS_ALL.fieldNames()))

    def counts(self) -> list[Row]:
        """Records per month and case."""
        return self.classified.groupBy(M, "case_type").count().collect()


def _latest_rows_out_of_view(
    summary: DataFrame, window_rows: DataFrame, latest_old: DataFrame, records: DataFrame, months: tuple[str, str]
) -> DataFrame | None:
    """The summary rows, not among `window_rows`, that become the latest of accounts the run leaves
    without an active row in view (`transforms.latest`); None when there are none.

    `months`: the run's range, whose rows of late accounts the run reads in full. Rare (a run that
    deletes every active row it sees of an account), so the cheap question comes first; the rows are
    then read by key from the months they lie in.
    """
    session = summary.sparkSession
    orphans = accounts_without_active_row(
        window_rows.select(*_KEY).unionByName(latest_old.select(*_KEY)), records
    ).collect()  # one job; `take(1)` would start one per batch of partitions it tries
    if not orphans:
        return None
    accounts = session.createDataFrame(orphans, "cons_acct_key bigint")
    keys = latest_outside(summary.select(*_KEY), accounts, months).collect()
    if not keys:
        return None
    wanted = session.createDataFrame(keys, "cons_acct_key bigint, rpt_as_of_mo string")
    return summary.where(in_months(sorted({k[M] for k in keys}))).join(wanted, [A, M], "left_semi")


def _all_there(report: Report, intended: int) -> Report:
    """`report` with a problem when the branch holds another number of the run's rows than it MERGEd."""
    if report.rows_read == intended:
        return report
    rule = f"the run's branch holds {report.rows_read} of the rows it wrote, not {intended}"
    return replace(report, problems=[*report.problems, Problem(report.table, "cons_acct_key", rule)])


class SummaryBackfill(_Cached):
    """Every patch of the run's months applied to the rows it reaches: the rows read, then the rows to commit."""

    def __init__(
        self,
        lakehouse: Lakehouse,
        options: BackfillOptions,
        patches: DataFrame,
        classified: DataFrame,
        months: tuple[str, str],
    ) -> None:
        super().__init__()
        self.lakehouse, self.months = lakehouse, months
        watermark = options.watermark(lakehouse)
        self.records = options.unapplied(classified, watermark)
        cases = [F.count_if(F.col("case_type") == c).alias(c) for c in CASES]
        totals = self.records.agg(F.max("base_ts"), *cases).collect()[0]  # one Spark job, as before the counts
        self.applied_through: dt.datetime | None = totals[0]
        self.by_case = {c: int(totals[c] or 0) for c in CASES}
        self.patches = options.unapplied(patches, watermark).where(F.col("target_mo").between(*months))
        self.window = (add_months(months[0], -REACH), months[1])

    def read(self) -> tuple[Report, Report]:
        """The rows the run reads, gathered and patched; the reports of the rows read and of their agreement.

        Of `summary`: the rows of the months from the first on and the rows late records take their
        history from, plus any row that becomes an account's latest from outside the range; of
        `latest_summary`: the batch's accounts. Both as of one snapshot.
        """
        lake, (first, last) = self.lakehouse, self.months
        summary = lake.read(lake.summary_table, lake.snapshot_id(lake.summary_table))
        before_first = (self.window[0], add_months(first, -1))
        in_range = self._cache(
            summary_rows_needed(summary, self.records, self.months, self.months).unionByName(
                rows_at(summary, base_keys(self.patches, self.records), before_first)
            )
        )
        latest = lake.read(lake.latest_table, lake.snapshot_id(lake.latest_table))
        latest_old = self._cache(latest.join(self.records.select(A), A, "left_semi"))
        out_of_view = _latest_rows_out_of_view(summary, in_range, latest_old, self.records, (first, last))
        window_rows = in_range if out_of_view is None else in_range.unionByName(self._cache(out_of_view))
        self.updated = self._cache(apply_patches(self.patches, window_rows, latest_old))
        summary_read, latest_read = rows_read(self.updated)
        self.read_report, agrees = concurrently(
            lambda: check_frame(window_rows, "summary"),
            lambda: latest_disagreements(latest_read, summary_read, self.window),
        )
        return self.read_report, agrees

    def write(self, run_id: str) -> None:
        """MERGE the rows to write into the run's branches of summary and latest_summary (`main` stays).

        No MERGE (no snapshot) into a table that gets no row: one Spark job over the cached rows asks.
        """
        counts = self.updated.agg(F.count_if("written"), F.count_if("latest_changed")).first()
        assert counts is not None
        self.intended = (int(counts[0]), int(counts[1]))
        self.written, self.latest_new = written_rows(self.updated), changed_latest_rows(self.updated)
        self.heads = publish.write(
            self.lakehouse,
            run_id,
            self.written if counts[0] else None,
            self.latest_new if counts[1] else None,
            self.months,
        )

    def check_writes(self, run_id: str) -> tuple[Report, list[Report]]:
        """The reports of the rows the branches hold: the summary rows and latest_summary rows written, and the
        agreement of each account's latest_summary row with its newest active summary row after the run."""
        lake, (first, last) = self.lakehouse, self.months
        summary = publish.read_branch(lake, lake.summary_table, run_id).where(F.col(M).between(first, last))
        latest = publish.read_branch(lake, lake.latest_table, run_id)
        summary_after, _ = rows_after(self.updated)
        self.written_report, *self.latest_reports = concurrently(
            lambda: check_frame(summary.join(self.written.select(A, M), [A, M], "left_semi"), "summary"),
            lambda: check_frame(latest.join(self.latest_new.select(A), A, "left_semi"), "latest_summary"),
            lambda: latest_disagreements(
                latest.join(self.updated.select(A).distinct(), A, "left_semi"), summary_after, self.window
            ),
        )
        self.written_report, self.latest_reports[0] = (
            _all_there(report, n)
            for report, n in zip((self.written_report, self.latest_reports[0]), self.intended, strict=True)
        )
        return self.written_report, self.latest_reports

    def publish(self, run_id: str) -> Commit:
        """Publish the branches' heads and the watermark (`runlog.publish_run`)."""
        assert self.applied_through is not None
        return publish_run(self.lakehouse, run_id, Published(self.heads, self.applied_through))

    def first_changes(self, n: int = 5) -> list[RowChange]:
        """The first `n` summary rows the run changed (by key), old → new: what the UI shows of a run.

        From the cached rows, which hold both versions: one small Spark job, no read of the tables.
        """
        changed = self.updated.where(F.col("written") & ~F.col("summary_old").eqNullSafe(F.col("row")))
        rows = changed.orderBy(A, "mo").select("summary_old", "row").limit(n).collect()
        return [
            row_change("summary", (A, M), old.asDict(recursive=True) if old else None, new.asDict(recursive=True))
            for old, new in rows
        ]

    def applied(self) -> Applied:
        """Records applied per case and summary rows written, for the run log (no Spark job)."""
        written = self.written_report.rows_read if self.applied_through is not None else 0
        return Applied(self.by_case, written)

    def rows_by_month(self) -> dict[str, dict[str, int]]:
        """Summary rows read and written per month, from the checks' counts (no Spark job)."""
        out: dict[str, dict[str, int]] = {}
        for name, report in (("rows_read", self.read_report), ("rows_written", self.written_report)):
            for month, n in report.rows_by_month.items():
                out.setdefault(month, {})[name] = n
        return out
