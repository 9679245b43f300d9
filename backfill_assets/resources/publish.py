"""Write-audit-publish of summary and latest_summary: a run writes to a branch of its own on each table,
its write checks read what the branches hold, and it publishes by fast-forwarding `main` of both.

Iceberg has no multi-table commit in Spark. Publishing is two metadata-only commits (summary, then
latest_summary), so a reader of `main` can see the new summary beside the old latest_summary only
between them; the tag `run-<run id>` on both tables names a consistent pair for ever after. The
branches and tags are managed through Iceberg's table API: a metadata commit each, no Spark job. Every
step of `publish` is skipped when done already, so recovery completes a publish that a killed
process began (forward, never half-rolled back).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from backfill_assets.faults import fault_point
from backfill_assets.resources.lakehouse import STATE_DDL, Lakehouse
from backfill_assets.resources.spark import (
    added_data_files,
    concurrently,
    iceberg_table,
    ref_snapshot,
    snapshot_by_id,
)


@dataclass(frozen=True)
class Heads:
    """The snapshots a run's branches hold after its MERGEs: what `main` of each table is published to."""

    summary: int
    latest: int


@dataclass(frozen=True)
class Commit:
    """What a published run left behind: the snapshots of `main`, and the rows its MERGEs wrote."""

    summary_snapshot: int
    latest_snapshot: int
    summary_rows_written: int
    latest_rows_written: int


Merged = dict[str, list[str]]  # per table: the data files the run's MERGE added to its branch


def branch(run_id: str) -> str:
    return f"backfill-{run_id}"


def tag(run_id: str) -> str:
    return f"run-{run_id}"


def _tables(lake: Lakehouse) -> tuple[str, str]:
    return lake.summary_table, lake.latest_table


def write(
    lake: Lakehouse, run_id: str, rows: DataFrame | None, latest: DataFrame | None, months: tuple[str, str]
) -> tuple[Heads, Merged]:
    """Branch both tables at their `main` and MERGE the run's rows into the branches; `main` does not move.

    None: nothing to write to that table (its branch stays at `main`). The summary MERGE matches only
    within the run's months, so Iceberg prunes the other partitions. Returns the branches' heads and the
    data files each MERGE added (what the write checks expect the run's rows in).
    """
    session, name = lake.spark.session, branch(run_id)
    merged: Merged = {lake.summary_table: [], lake.latest_table: []}
    for table in _tables(lake):
        lake.set_write_mode(table)
        refs = iceberg_table(lake.spark, lake.name(table)).manageSnapshots()
        if ref_snapshot(lake.spark, lake.name(table), name) is not None:  # a retried step starts afresh
            refs = refs.removeBranch(name)
        refs.createBranch(name, _main(lake, table)).commit()
    fault_point("summary_merge")
    merges = []
    if rows is not None:
        rows.createOrReplaceTempView("_backfill_rows")
        summary_merge = f"""MERGE INTO {_on_branch(lake, lake.summary_table, run_id)} t USING _backfill_rows s
            ON t.cons_acct_key = s.cons_acct_key AND t.rpt_as_of_mo = s.rpt_as_of_mo
               AND t.rpt_as_of_mo BETWEEN '{months[0]}' AND '{months[1]}'
            WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"""
        merges.append((lake.summary_table, summary_merge))
    if latest is not None:
        latest.createOrReplaceTempView("_backfill_latest")
        latest_merge = f"""MERGE INTO {_on_branch(lake, lake.latest_table, run_id)} t USING _backfill_latest s
            ON t.cons_acct_key = s.cons_acct_key
            WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"""
        merges.append((lake.latest_table, latest_merge))

    def merge(table: str, query: str) -> list[str]:
        session.sql(query)
        return _merge_files(lake, table, run_id)

    # two tables, two commits that wait for nothing of each other: the small latest_summary MERGE runs in
    # the idle gaps of the summary MERGE (planning, commit, small final stages)
    files = concurrently(*(lambda m=m: merge(*m) for m in merges))
    merged.update(zip((table for table, _ in merges), files, strict=True))
    fault_point("auditing")
    summary, latest_head = (ref_snapshot(lake.spark, lake.name(t), name) for t in _tables(lake))
    assert summary is not None and latest_head is not None
    return Heads(summary, latest_head), merged


def _merge_files(lake: Lakehouse, table: str, run_id: str) -> list[str]:
    """The data files of the MERGE just committed to the run's branch of `table`."""
    head = ref_snapshot(lake.spark, lake.name(table), branch(run_id))
    assert head is not None
    return added_data_files(lake.spark, lake.name(table), head)


def read_branch(lake: Lakehouse, table: str, run_id: str) -> DataFrame:
    """The table as the run's branch holds it: what the write checks judge."""
    return lake.spark.session.read.option("branch", branch(run_id)).table(lake.name(table))


def publish(lake: Lakehouse, run_id: str, heads: Heads, applied_through: dt.datetime, before: Heads) -> Commit:
    """Publish summary, then latest_summary, then the watermark; a step done already is skipped (recovery).

    Each table's publish is one metadata commit: `main` fast-forwarded to the branch's head, the tag
    `run-<run id>` created there and the branch removed together. A table whose branch is gone
    is published already.
    """
    for table, head in zip(_tables(lake), (heads.summary, heads.latest), strict=True):
        name = lake.name(table)
        if ref_snapshot(lake.spark, name, branch(run_id)) is not None:
            refs = iceberg_table(lake.spark, name).manageSnapshots()
            if _main(lake, table) != head:
                refs = refs.fastForwardBranch("main", branch(run_id))
            if ref_snapshot(lake.spark, name, tag(run_id)) is None:
                refs = refs.createTag(tag(run_id), head)
            refs.removeBranch(branch(run_id)).commit()
        if table == lake.summary_table:
            fault_point("between_tables")
    session = lake.spark.session
    state = session.table(lake.name(lake.state_table))
    if not state.where(F.col("run_id") == run_id).limit(1).count():
        row = [(applied_through, run_id, None, heads.summary, heads.latest)]
        session.createDataFrame(row, STATE_DDL).withColumn("committed_at", F.current_timestamp()).writeTo(
            lake.name(lake.state_table)
        ).append()
    return Commit(
        heads.summary,
        heads.latest,
        _added(lake, lake.summary_table, heads.summary, before.summary),
        _added(lake, lake.latest_table, heads.latest, before.latest),
    )


def drop_branches(lake: Lakehouse, run_id: str) -> None:
    """Remove the run's unpublished branches, if it has any."""
    for table in _tables(lake):
        if ref_snapshot(lake.spark, lake.name(table), branch(run_id)) is not None:
            iceberg_table(lake.spark, lake.name(table)).manageSnapshots().removeBranch(branch(run_id)).commit()


def _main(lake: Lakehouse, table: str) -> int | None:
    return ref_snapshot(lake.spark, lake.name(table), "main")


def _on_branch(lake: Lakehouse, table: str, run_id: str) -> str:
    return f"{lake.name(table)}.`branch_{branch(run_id)}`"


def _added(lake: Lakehouse, table: str, head: int, before: int) -> int:
    """Rows the run's MERGE wrote, from its snapshot's summary (0 when it made none)."""
    if head == before:
        return 0
    snapshot = snapshot_by_id(lake.spark, lake.name(table), head) or {}
    return int(snapshot.get("added-records", 0))
