"""Keeping the tables tidy: compaction of the delete files merge-on-read runs leave, under the run lock."""

from __future__ import annotations

from pyspark.sql import functions as F

from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.runlog import begin_run, end_run
from backfill_assets.resources.spark import latest_snapshot


def compact(lake: Lakehouse, run_id: str) -> dict[str, dict[str, int]]:
    """Rewrite the data files of summary and latest_summary that carry deletes, under the run lock.

    Merge-on-read leaves position-delete files behind each run; reads pay for them until this
    merges them into the data (a logical no-op: the same rows, new files). It holds the run lock
    because a compaction committing under a running MERGE would leave that MERGE's deletes
    pointing at replaced files.
    """
    begin_run(lake, run_id)
    out = {}
    try:
        for table in (lake.summary_table, lake.latest_table):
            out[table] = _rewrite_files_with_deletes(lake, table)
    except Exception as error:
        end_run(lake, run_id, ok=False, error=str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise
    end_run(lake, run_id, ok=True)
    return out


def _rewrite_files_with_deletes(lake: Lakehouse, table: str) -> dict[str, int]:
    """Rewrite every data file of the partitions that have delete files, and drop those deletes.

    Whole partitions, with new sequence numbers, so that no data file as old as their deletes
    stays behind and `remove-dangling-deletes` can drop them all. Iceberg's position-delete
    rewrite cannot read tables with array columns, and its dangling-delete removal skips
    unpartitioned tables: an unpartitioned table (latest_summary) is rewritten whole instead.
    """
    session, name = lake.spark.session, lake.name(table)
    deletes = session.table(f"{name}.delete_files")
    if "partition" not in deletes.columns:
        if not deletes.limit(1).count():
            return {}
        session.table(name).writeTo(name).overwrite(F.lit(True))
        after = latest_snapshot(lake.spark, name) or {}
        return {
            "rewritten_data_files_count": int(after.get("deleted-data-files", 0)),
            "added_data_files_count": int(after.get("added-data-files", 0)),
            "removed_delete_files_count": int(after.get("removed-delete-files", 0)),
        }
    months = sorted(r[0] for r in deletes.select("partition.rpt_as_of_mo").distinct().collect())
    if not months:
        return {}
    row = session.sql(
        f"CALL {lake.spark.catalog}.system.rewrite_data_files(table => '{lake.spark.namespace}.{table}',"
        f' where => "rpt_as_of_mo IN ({", ".join(repr(m) for m in months)})",'
        " options => map('rewrite-all', 'true', 'remove-dangling-deletes', 'true',"
        " 'use-starting-sequence-number', 'false'))"
    ).first()
    assert row is not None
    return {k: int(v or 0) for k, v in row.asDict().items()}
