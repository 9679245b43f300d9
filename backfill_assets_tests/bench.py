"""Benchmark: the backfill against the floor of reading and writing the affected partitions once.

    python -m backfill_assets_tests.bench --size small      # 20,000 accounts × 36 months
    python -m backfill_assets_tests.bench --size medium     # 200,000 accounts × 36 months (opt-in)

One process: generate (or reuse, by size and seed) the workload, time the floor, run the real
Dagster job (`backfill-assets run` path), check a sample of changed accounts against the reference
model, and print one table. Ratios are measured in the same process sitting, so machine noise
affects both sides alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from backfill_assets.definitions import build_defs
from backfill_assets.generate import generate, write
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import run_pending
from backfill_assets.tables import SUMMARY_COLUMNS
from backfill_assets.transforms.months import add_months
from backfill_assets_tests.reference_model import ReferenceModel, deleted

SIZES = {"tiny": 2_000, "small": 20_000, "medium": 200_000}
END_MONTH = "2026-09"
T = TypeVar("T")


@dataclass
class Phase:
    seconds: float
    jobs: int
    read_bytes: int
    written_bytes: int
    shuffle_bytes: int
    jvm_heap_peak: int


class Meter:
    """Wall time, Spark jobs and I/O bytes (from the Spark UI's REST API) and JVM heap peak of a phase."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        sc = spark.sparkContext
        self.url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"
        self.jvm = sc._jvm  # type: ignore[attr-defined]

    def _stages(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/stages?status=complete") as r:
            return json.load(r)

    def _pools(self) -> list[Any]:
        mf = self.jvm.java.lang.management.ManagementFactory
        return [p for p in mf.getMemoryPoolMXBeans() if str(p.getType()) == "Heap memory"]

    def measure(self, fn: Callable[[], T]) -> tuple[T, Phase]:
        before = {s["stageId"] for s in self._stages()}
        jobs_before = len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(None))
        for p in self._pools():
            p.resetPeakUsage()
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        new = [s for s in self._stages() if s["stageId"] not in before]
        jobs = len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(None)) - jobs_before
        heap = sum(p.getPeakUsage().getUsed() for p in self._pools())
        return out, Phase(
            seconds,
            jobs,
            sum(s["inputBytes"] for s in new),
            sum(s["outputBytes"] for s in new),
            sum(s["shuffleWriteBytes"] for s in new),
            heap,
        )


def workload(spark_resource: SparkIceberg, lakehouse: Lakehouse, accounts: int, seed: int) -> None:
    """Generate once per size and seed; later runs roll the tables back to the generated snapshots."""
    session = spark_resource.session
    baseline = spark_resource.table("bench_baseline")
    tables = [lakehouse.accounts_table, lakehouse.summary_table, lakehouse.latest_table]
    if session.catalog.tableExists(baseline):
        lakehouse.rollback({r["table"]: r["snapshot_id"] for r in session.table(baseline).collect()})
        lakehouse.reset_watermark()
        return
    print(f"generating {accounts} accounts × 36 months (seed {seed}) …", flush=True)
    write(generate(session, accounts=accounts, months=36, end_month=END_MONTH, seed=seed), spark_resource)
    lakehouse.reset_watermark()
    rows = [(t, lakehouse.snapshot_id(t)) for t in tables]
    session.createDataFrame(rows, "table string, snapshot_id bigint").writeTo(baseline).createOrReplace()


def check_sample(spark: SparkSession, lakehouse: Lakehouse, late_accounts: list[int], applied: dt.datetime) -> int:
    """Recompute the sampled accounts in the reference model and compare every summary row.

    The model sees what the generated summary holds as one run (records up to `applied`), then the
    late batch as a second run, exactly as the pipeline did.
    """
    accounts = spark.table(lakehouse.name(lakehouse.accounts_table)).where(F.col("cons_acct_key").isin(late_accounts))
    records = [r.asDict() for r in accounts.collect()]
    model = ReferenceModel()
    model.deliver(r for r in records if r["base_ts"] <= applied)
    model.run()
    model.deliver(r for r in records if r["base_ts"] > applied)
    model.run()
    actual = {
        (r["cons_acct_key"], r["rpt_as_of_mo"]): r.asDict(True)
        for r in spark.table(lakehouse.name(lakehouse.summary_table))
        .where(F.col("cons_acct_key").isin(late_accounts))
        .select(*SUMMARY_COLUMNS)
        .collect()
    }
    expected = model.summary()
    assert sorted(actual) == sorted(expected), "row keys differ from the reference model"
    for key, want in expected.items():
        if deleted(want["soft_del_cd"]):
            assert actual[key]["soft_del_cd"] == want["soft_del_cd"], key
        else:
            assert actual[key] == want, key
    return len(expected)


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--size", choices=SIZES, default="small")
    args.add_argument("--seed", type=int, default=7)
    args.add_argument("--sample", type=int, default=200, help="accounts checked against the reference model")
    opts = args.parse_args(argv)
    spark_resource = SparkIceberg(namespace=f"bench_{opts.size}_{opts.seed}")
    lakehouse = Lakehouse(spark=spark_resource)
    spark = spark_resource.session
    meter = Meter(spark)
    workload(spark_resource, lakehouse, SIZES[opts.size], opts.seed)
    lakehouse.ensure_tables()

    applied = lakehouse.watermark()
    assert applied is not None
    months = lakehouse.pending_months(applied)
    first, last = months[0], min(add_months(months[-1], 35), END_MONTH)
    summary = spark.table(lakehouse.name(lakehouse.summary_table))
    summary_rows = summary.count()
    scratch = spark_resource.table("bench_floor")

    def floor() -> None:
        summary.where(F.col("rpt_as_of_mo").between(first, last)).writeTo(scratch).partitionedBy(
            F.col("rpt_as_of_mo")
        ).createOrReplace()

    _, floor_phase = meter.measure(floor)
    report, run_phase = meter.measure(
        lambda: run_pending(build_defs(spark_resource, lakehouse), dg.DagsterInstance.ephemeral())
    )
    assert report.success, report.lines()
    late = report.metadata.get("classified_accounts", {}).get("records", 0)
    changed = report.metadata.get("summary_backfilled", {}).get("summary_rows_written", 0)
    late_accounts = [
        r[0]
        for r in spark.table(spark_resource.table("classified_accounts"))
        .select("cons_acct_key")
        .distinct()
        .orderBy(F.hash("cons_acct_key"))
        .limit(opts.sample)
        .collect()
    ]
    checked = check_sample(spark, lakehouse, late_accounts, applied)
    py_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    mib = 1024 * 1024
    rows = [
        ("summary rows", f"{summary_rows:,}", ""),
        ("late records (winners)", f"{late:,}", ""),
        ("summary rows changed", f"{changed:,}", ""),
        ("affected partitions", f"{first} … {last}", ""),
        ("seconds", f"{floor_phase.seconds:.1f}", f"{run_phase.seconds:.1f}"),
        ("spark jobs", str(floor_phase.jobs), str(run_phase.jobs)),
        ("bytes read (MiB)", f"{floor_phase.read_bytes / mib:.1f}", f"{run_phase.read_bytes / mib:.1f}"),
        ("bytes written (MiB)", f"{floor_phase.written_bytes / mib:.1f}", f"{run_phase.written_bytes / mib:.1f}"),
        ("shuffle written (MiB)", f"{floor_phase.shuffle_bytes / mib:.1f}", f"{run_phase.shuffle_bytes / mib:.1f}"),
        (
            "driver JVM heap peak (MiB)",
            f"{floor_phase.jvm_heap_peak / mib:.0f}",
            f"{run_phase.jvm_heap_peak / mib:.0f}",
        ),
    ]
    print(f"\nbackfill benchmark: size {opts.size} ({SIZES[opts.size]:,} accounts × 36 months), seed {opts.seed}")
    print(f"{'':28} {'floor':>16} {'backfill':>16}")
    for name, a, b in rows:
        print(f"{name:28} {a:>16} {b:>16}")
    print(f"{'ratio backfill / floor':28} {run_phase.seconds / floor_phase.seconds:>33.2f}")
    print(f"{'python process peak RSS (MiB)':28} {py_peak / mib:>33.0f}")
    print(f"reference check: {len(late_accounts)} late accounts, {checked} summary rows equal to the reference model")


if __name__ == "__main__":
    main()
