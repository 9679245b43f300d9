"""What a run decides, free of Dagster: the batch it applies (`Batch`) and the rows it commits (`SummaryBackfill`).

Each is a sequence of steps the asset calls between its checks, so that nothing is computed past a
check that failed (independent checks are evaluated at once, `concurrently`); both hold the frames
they cache and release them when the `with` block ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.contracts.models import rejections
from backfill_assets.contracts.tables import CASES
from backfill_assets.contracts.validation import (
    Problem,
    Report,
    check_frame,
    check_structure,
    column_mismatches,
    held_once,
    latest_disagreements,
)
from backfill_assets.operations.diff import RowChange, row_change
from backfill_assets.resources import publish
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.options import BackfillOptions
from backfill_assets.resources.publish import Commit
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.runlog import Applied, Published, publish_run
from backfill_assets.resources.spark import concurrently
from backfill_assets.transforms.classify import classify, winners
from backfill_assets.transforms.latest import accounts_without_active_row, latest_outside
from backfill_assets.transforms.months import add_months, in_months
from backfill_assets.transforms.reach import summary_rows_needed
from backfill_assets.transforms.rejects import accepted, rejects, tag, unseen
from backfill_assets.transforms.rewrite import (
    changed_latest_rows,
    old_columns,
    rewrite,
    scalars_after,
    scalars_read,
    written_rows,
)

A, M = "cons_acct_key", "rpt_as_of_mo"
_KEY = [A, M, "soft_del_cd"]


class _Cached:
    """Frames persisted for the steps of one asset (at the configured `cache_level`), released together."""

    def __init__(self, level: StorageLevel) -> None:
        self._frames: list[DataFrame] = []
        self.level = level

    def _cache(self, frame: DataFrame) -> DataFrame:
        self._frames.append(frame.persist(self.level))
        return self._frames[-1]

    def _keep_only(self, *kept: DataFrame) -> None:
        """Release every frame cached so far but `kept`, now rather than when the block ends."""
        for frame in self._frames:
            if not any(frame is k for k in kept):
                frame.unpersist()
        self._frames = [f for f in self._frames if any(f is k for k in kept)]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for frame in self._frames:
            frame.unpersist()


class Batch(_Cached):
    """The new records of the selected months: checked, bad ones set aside, the rest classified (§5, §7)."""

    def __init__(self, lakehouse: Lakehouse, options: BackfillOptions, quality: DataQuality, keys: list[str]) -> None:
        super().__init__(lakehouse.spark.storage_level)
        self.lakehouse, self.options, self.quality, self.keys = lakehouse, options, quality, keys
        self.layout = lakehouse.layout
        self.watermark = options.watermark(lakehouse)
        self.unapplied = options.unapplied(
            lakehouse.read(lakehouse.accounts_table), self.watermark, with_null_base_ts=True
        )

    def structure(self) -> Report:
        """Columns and types of accounts_all (the rules need every column), and the columns of the stored
        summary and latest_summary against the layout (docs/spec.md §8): no Spark job."""
        lake, report = self.lakehouse, check_structure(self.unapplied, "accounts_all", self.layout)
        stored = [
            (t, lake.read(name).schema)
            for t, name in (("summary", lake.summary_table), ("latest_summary", lake.latest_table))
        ]
        mismatches = [p for t, schema in stored for p in column_mismatches(t, schema, self.layout.summary)]
        return replace(report, problems=[*report.problems, *mismatches])

    def source(self) -> Report:
        """The source rules counted over the new records, each tagged with the first rule it breaks.

        The batch is read once: the source check, the latest rows and the winners all use it; a
        load's many small files go into as many partitions as a shuffle has, not a task per file.
        """
        session = self.lakehouse.spark.session
        tasks = int(session.conf.get("spark.sql.shuffle.partitions") or 1)
        bounds = self.quality.bounds()
        source_columns = self.layout.accounts_all.fieldNames()
        tagged = tag(self.unapplied.coalesce(tasks), rejections(bounds), source_columns)
        self.batch = self._cache(unseen(tagged, self.lakehouse.read(self.lakehouse.rejects_table)))
        self.report = self.quality.judge_rejects(check_frame(self.batch, "accounts_all", self.layout, bounds))
        return self.report

    def pending(self) -> list[str]:
        return self.options.pending_months(self.lakehouse, self.watermark)

    def classify(self, run_id: str) -> tuple[Report, Report]:
        """The reports of the latest_summary rows of the batch's accounts and of the batch classified: one
        winner per account and month, in summary values, with its case (kept: it is the output).

        Both checks are evaluated at once (`concurrently`), the caller gating them in that order; the
        rejected records are appended to the rejects table meanwhile (under the run lock: a run that
        fails, here or later, takes them back).
        """
        self.records = accepted(self.batch).where(in_months(self.keys))
        latest = self.lakehouse.read(self.lakehouse.latest_table).join(self.records.select(A), A, "left_semi")
        self.latest_rows = self._cache(latest)
        self.classified = classify(winners(self.records), self.latest_rows, self.layout)
        self.classified.persist(self.level)
        cases = {c: F.col("case_type") == c for c in CASES}
        latest_report, classified_report, _ = concurrently(
            lambda: check_frame(self.latest_rows, "latest_summary", self.layout),
            lambda: check_frame(self.classified, "classified_accounts", self.layout, tallies=cases),
            lambda: self._record_rejects(run_id),
        )
        assert latest_report is not None and classified_report is not None
        self.classified_report = classified_report
        return latest_report, classified_report

    def _record_rejects(self, run_id: str) -> None:
        if self.report.rejected:
            self.lakehouse.record_rejects(rejects(self.batch, run_id, self.layout.accounts_all.fieldNames()))

    def counts(self) -> dict[str, dict[str, int]]:
        """Records per case and month, as the check of the classified records counted them (no Spark job)."""
        return self.classified_report.tallies


def _latest_rows_out_of_view(
    summary: DataFrame, window_rows: DataFrame, latest_old: DataFrame, records: DataFrame, months: tuple[str, str]
) -> DataFrame | None:
    """The summary rows, not among `window_rows`, that become the latest of accounts the run leaves
    without an active row in view (`transforms.latest`); None when there are none.

    `months`: the run's range, whose rows of late accounts the run reads in full. Rare (a run that
    deletes every active row it sees of an account), so the cheap question comes first; the rows are
    then read by key from the months they lie in.
    """
    orphans = accounts_without_active_row(
        window_rows.select(*_KEY).unionByName(latest_old.select(*_KEY)), records
    ).collect()  # one job; `take(1)` would start one per batch of partitions it tries
    if not orphans:
        return None
    accounts = F.broadcast(summary.sparkSession.createDataFrame(orphans, "cons_acct_key bigint"))
    keys = latest_outside(summary.select(*_KEY), accounts, months).collect()
    return _rows_at_keys(summary, keys) if keys else None


def _rows_at_keys(summary: DataFrame, keys: Sequence[tuple[Any, ...]]) -> DataFrame:
    """The `summary` rows at (account, month) keys the driver holds, read from the months they lie in only.

    The keys are broadcast: a frame made from Python rows has no size Spark knows, so a plain join
    would shuffle every row of those months (at medium: a gigabyte for a handful of keys).
    """
    wanted = summary.sparkSession.createDataFrame(keys, "cons_acct_key bigint, rpt_as_of_mo string")
    return summary.where(in_months(sorted({k[1] for k in keys}))).join(F.broadcast(wanted), [A, M], "left_semi")


def _base_rows(summary: DataFrame, own: DataFrame, latest_old: DataFrame) -> tuple[DataFrame | None, DataFrame]:
    """The whole old row each account's first record takes its older history from (`base_mo`):
    those read from `summary` (None when there are none), and those among the latest_summary rows.

    From the latest_summary rows already read where it is one of them (Case II: always), else from
    `summary`, reading only the months where such rows lie.
    """
    first = own.groupBy(A).agg(F.min(F.struct(M, "base_mo")).alias("_f"))
    keys = first.select(A, F.col("_f.base_mo").alias(M)).where(F.col(M).isNotNull())
    from_latest = latest_old.join(keys, [A, M], "left_semi")
    wanted = keys.join(latest_old.select(A, M), [A, M], "left_anti").collect()
    return (_rows_at_keys(summary, wanted) if wanted else None), from_latest


def _with_bases(read: Report, bases: Report, first: str) -> Report:
    """The report of the rows read: their scalars, and the base rows whole (counted once: those before `first`)."""
    before = {m: n for m, n in bases.rows_by_month.items() if m < first}
    by_month = {m: read.rows_by_month.get(m, 0) + before.get(m, 0) for m in {*read.rows_by_month, *before}}
    return Report(
        read.table,
        read.rows_read + sum(before.values()),
        read.problems + bases.problems,
        {**bases.pandera_errors, **read.pandera_errors},
        by_month,
    )


def _latest_read(updated: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """The latest_summary rows the run read, whole."""
    return updated.where(F.col("latest_old").isNotNull()).select(
        *[F.col(A) if c == A else F.col(f"latest_old.{c}").alias(c) for c in columns]
    )


def _held(computed: Report, held: Report) -> Report:
    """The report of the rows a run wrote: their rules (as computed) and how its branch holds them (`held_once`)."""
    return replace(computed, rows_read=held.rows_read, problems=[*held.problems, *computed.problems])


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
        super().__init__(lakehouse.spark.storage_level)
        self.lakehouse, self.months, self.layout = lakehouse, months, lakehouse.layout
        watermark = options.watermark(lakehouse)
        self.records = options.unapplied(classified, watermark)
        cases = [F.count_if(F.col("case_type") == c).alias(c) for c in CASES]
        totals = self.records.agg(F.max("base_ts"), *cases).collect()[0]  # one Spark job, as before the counts
        self.applied_through: dt.datetime | None = totals[0]
        self.by_case = {c: int(totals[c] or 0) for c in CASES}
        self.patches = options.unapplied(patches, watermark).where(F.col("target_mo").between(*months))
        self.window = (add_months(months[0], -self.layout.reach), months[1])

    def read(self) -> tuple[Report, Report]:
        """The rows the run reads, gathered and rewritten; the reports of the rows read and of their agreement.

        Of `summary`, without their histories (`transforms.rewrite`): the late accounts' rows of the
        run's months and any row that becomes an account's latest from outside them; whole: each
        account's base row, and a row that becomes an account's latest; of `latest_summary`: the
        batch's accounts, whole. All as of one snapshot.
        """
        lake, (first, last), layout = self.lakehouse, self.months, self.layout
        summary = self.summary = lake.read(lake.summary_table, lake.snapshot_id(lake.summary_table))
        scalar_columns = old_columns(layout)
        scalars = summary.select(*scalar_columns)
        latest = lake.read(lake.latest_table, lake.snapshot_id(lake.latest_table))
        latest_old = self._cache(latest.join(self.records.select(A), A, "left_semi"))
        own = self.patches.where(F.col("position") == 0)
        from_summary, from_latest = _base_rows(summary, own, latest_old)
        tagged = from_latest.withColumn("_read", F.lit(False))
        if from_summary is not None:
            tagged = from_summary.withColumn("_read", F.lit(True)).unionByName(tagged)
        bases = self._cache(tagged)
        in_range = self._cache(summary_rows_needed(scalars, self.records, self.months, self.months))
        in_view = in_range.unionByName(bases.select(*scalar_columns))  # a base row in range twice: one row below
        out_of_view = _latest_rows_out_of_view(scalars, in_view, latest_old, self.records, (first, last))
        read = in_range if out_of_view is None else in_range.unionByName(self._cache(out_of_view))
        old_rows = read.unionByName(bases.select(*scalar_columns))
        updated = self._cache(rewrite(own, old_rows, bases, latest_old, layout))
        self.updated = self._whole(updated, summary)  # also counts the rows to write (`intended`)
        # the base rows read from summary, whole: their arrays are the older history of what is written (those
        # of latest_summary were judged with it, by classified_accounts' latest_summary_valid)
        bases_read = bases.where("_read").drop("_read")
        none_read = Report("summary", 0, [])
        scalars_report, bases_report, agrees = concurrently(
            lambda: check_frame(read, "summary", layout),
            lambda: none_read if from_summary is None else check_frame(bases_read, "summary", layout),
            lambda: latest_disagreements(
                _latest_read(self.updated, layout.summary_columns), scalars_read(self.updated), self.window
            ),
        )
        self.read_report = _with_bases(scalars_report, bases_report, first)
        # what the run read is in `updated` now (cached whole by `_whole`'s count): only that is kept for the
        # write, the write checks and the metadata, which lowers the run's peak memory
        self._keep_only(updated, self.updated)
        return self.read_report, agrees

    def _whole(self, updated: DataFrame, summary: DataFrame) -> DataFrame:
        """`updated` with whole rows where an account's new latest row was read without its histories (rare).

        The same job counts the rows each table gets (`intended`: what the write checks expect).
        """
        incomplete = F.when(F.col("latest_changed") & ~F.col("complete"), F.struct(A, "mo"))
        tally = updated.agg(F.count_if("written"), F.count_if("latest_changed"), F.collect_list(incomplete)).first()
        assert tally is not None
        self.intended = (int(tally[0]), int(tally[1]))
        keys = [tuple(k) for k in tally[2]]
        if not keys:
            return updated
        whole = _rows_at_keys(summary, keys).select(
            A, F.col(M).alias("mo"), F.struct(*self.layout.summary_columns).alias("_whole")
        )
        completed = updated.join(whole, [A, "mo"], "left").withColumn("row", F.coalesce("_whole", "row"))
        return self._cache(completed.drop("_whole"))

    def write(self, run_id: str) -> None:
        """MERGE the rows to write into the run's branches of summary and latest_summary (`main` stays).

        No MERGE (no snapshot) into a table that gets no row (`intended`, counted by `_whole`).
        """
        counts = self.intended
        self.written, self.latest_new = written_rows(self.updated), changed_latest_rows(self.updated)
        self.heads, self.merged = publish.write(
            self.lakehouse,
            run_id,
            self.written if counts[0] else None,
            self.latest_new if counts[1] else None,
            self.months,
        )

    def check_writes(self, run_id: str) -> tuple[Report, list[Report]]:
        """The reports of the rows written, and of the agreement of each account's latest_summary row with its
        newest active summary row after the run.

        The rows written are judged by the row rules as the run computed them (cached), and the branches are
        judged to hold exactly those rows: each written key once, from a data file of the run's MERGE
        (`held_once` reads keys and file names, no history). Reading the written rows back whole would
        decode every row of the files they share with rows the run did not touch: a cost that follows the
        table, not the batch.
        """
        lake, (first, last), layout = self.lakehouse, self.months, self.layout
        summary = publish.read_branch(lake, lake.summary_table, run_id).where(F.col(M).between(first, last))
        latest = publish.read_branch(lake, lake.latest_table, run_id)
        summary_after = scalars_after(self.updated)
        written, held, latest_written, latest_held, agrees = concurrently(
            lambda: check_frame(self.written, "summary", layout),
            lambda: held_once(summary, self.written.select(A, M), self.merged[lake.summary_table], "summary"),
            lambda: check_frame(self.latest_new, "latest_summary", layout),
            lambda: held_once(latest, self.latest_new.select(A), self.merged[lake.latest_table], "latest_summary"),
            lambda: latest_disagreements(
                latest.join(self.updated.select(A).distinct(), A, "left_semi"), summary_after, self.window
            ),
        )
        self.written_report = _all_there(_held(written, held), self.intended[0])
        self.latest_reports = [_all_there(_held(latest_written, latest_held), self.intended[1]), agrees]
        return self.written_report, self.latest_reports

    def publish(self, run_id: str) -> Commit:
        """Publish the branches' heads and the watermark (`runlog.publish_run`)."""
        assert self.applied_through is not None
        return publish_run(self.lakehouse, run_id, Published(self.heads, self.applied_through))

    def first_changes(self, n: int = 5) -> list[RowChange]:
        """The first `n` summary rows the run changed (by month, then account), old → new: what the UI shows.

        The run holds the new rows; the old ones of the first few written keys are read by key (the
        run read most rows without their histories), from the snapshot the run started from: by
        month first, so that they lie in one or two months and the read is of those partitions only.
        """
        written = self.updated.where("written").orderBy("mo", A).select("row").limit(4 * n).collect()
        if not written:
            return []
        new = {(r[A], r[M]): r.asDict(recursive=True) for r in (w["row"] for w in written)}
        rows = _rows_at_keys(self.summary, list(new)).select(*self.layout.summary_columns).collect()
        old = {(r[A], r[M]): r.asDict(recursive=True) for r in rows}
        changed = [k for k in new if old.get(k) != new[k]][:n]
        return [row_change("summary", (A, M), old.get(k), new[k]) for k in changed]

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
