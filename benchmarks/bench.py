"""Benchmark: the backfill against the floor of reading and writing the affected partitions once.

    python -m benchmarks.bench --size small      # 20,000 accounts × 36 months
    python -m benchmarks.bench --size medium     # 200,000 accounts × 36 months (opt-in)

One process: generate (or reuse, by size and seed) the workload, time the floor, run the real
Dagster job (`backfill-assets run` path), check the late accounts (every one up to small, a sample
at medium) against the reference model, and print one table per workload: the generated batch
(10 % of the accounts), the same tables with a tenth of it (1 %: cost should follow the batch), and
the same batch over more months of older history (cost should not follow the table). Ratios are
measured in the same process sitting, so machine noise affects both sides alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import resource
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from backfill_assets.definitions import build_defs
from backfill_assets.generate import generate, write
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.maintenance import compact
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import run_pending
from backfill_assets.transforms.months import add_months
from backfill_assets.transforms.verify import verify
from backfill_assets_tests.reference_model import ReferenceModel, deleted

SIZES = {"tiny": 2_000, "small": 20_000, "medium": 200_000}
SAMPLES = {"tiny": None, "small": None, "medium": 1_000}  # late accounts checked against the model (None: all)
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
    jvm_heap_after_gc_peak: int


class HeapSampler:
    """The driver JVM heap over a phase, sampled every 0.1 s: in use, and what each collection left.

    "In use" counts garbage not yet collected, so it climbs towards the heap's maximum whatever the
    job needs (the JVM collects only when it must). What a collection leaves is what the job held
    at that moment: its peak is the memory the phase needs. A sum of the per-pool peaks the JVM
    keeps would add peaks of different moments, hence the sampling.
    """

    def __init__(self, spark: SparkSession) -> None:
        sc = spark.sparkContext
        jvm, gateway = sc._jvm, sc._gateway  # type: ignore[attr-defined]
        management = jvm.java.lang.management.ManagementFactory
        self.memory = management.getMemoryMXBean()
        self.collectors = list(management.getGarbageCollectorMXBeans())
        # through the exported interface: py4j cannot call the JDK's internal implementation class
        self._last_gc = jvm.java.lang.Class.forName("com.sun.management.GarbageCollectorMXBean").getMethod(
            "getLastGcInfo", gateway.new_array(jvm.java.lang.Class, 0)
        )
        self._no_args = gateway.new_array(jvm.java.lang.Object, 0)
        self._heap_pools = {str(p.getName()) for p in management.getMemoryPoolMXBeans() if p.getType().name() == "HEAP"}

    def collect(self) -> None:
        self.memory.gc()

    def in_use(self) -> int:
        return int(self.memory.getHeapMemoryUsage().getUsed())

    def after_last_gcs(self) -> dict[str, tuple[int, int]]:
        """Per collector, the id of its last collection and the heap that collection left."""
        out = {}
        for collector in self.collectors:
            info = self._last_gc.invoke(collector, self._no_args)
            if info is not None:
                # the heap pools by name: iterating a Java collection through py4j ends in a Java exception,
                # which PySpark classifies with a dozen more calls; at 10 samples a second that loaded the
                # JVM being measured (14,000 such calls in one small run)
                after = info.getMemoryUsageAfterGc()
                left = sum(int(after.get(p).getUsed()) for p in self._heap_pools)
                out[str(collector.getName())] = (int(info.getId()), left)
        return out

    @contextmanager
    def sampling(self) -> Iterator[list[int]]:
        """Collect, then sample until the block ends: [peak heap in use, peak heap a collection left]."""
        self.collect()
        done, peaks = threading.Event(), [0, 0]
        seen = {name: gc_id for name, (gc_id, _) in self.after_last_gcs().items()}  # before the block can collect
        sampler = threading.Thread(target=self._sample, args=(done, peaks, seen), daemon=True)
        sampler.start()
        try:
            yield peaks
        finally:
            done.set()
            sampler.join()

    def _sample(self, done: threading.Event, peaks: list[int], seen: dict[str, int]) -> None:
        while True:
            stop = done.wait(0.1)
            peaks[0] = max(peaks[0], self.in_use())
            for name, (gc_id, left) in self.after_last_gcs().items():
                if seen.get(name) != gc_id:
                    seen[name] = gc_id
                    peaks[1] = max(peaks[1], left)
            if stop:
                return


class Meter:
    """Wall time, Spark jobs and I/O bytes (from the Spark UI's REST API) and JVM heap peaks of a phase."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        sc = spark.sparkContext
        self.url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"
        self.heap = HeapSampler(spark)

    def _stages(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/stages?status=complete") as r:
            return json.load(r)

    def measure(self, fn: Callable[[], T]) -> tuple[T, Phase]:
        before = {s["stageId"] for s in self._stages()}
        jobs_before = len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(None))
        with self.heap.sampling() as peaks:
            start = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - start
        new = [s for s in self._stages() if s["stageId"] not in before]
        jobs = len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(None)) - jobs_before
        return out, Phase(
            seconds,
            jobs,
            sum(s["inputBytes"] for s in new),
            sum(s["outputBytes"] for s in new),
            sum(s["shuffleWriteBytes"] for s in new),
            *peaks,
        )


def workload(
    spark_resource: SparkIceberg, lakehouse: Lakehouse, accounts: int, seed: int, older: int, batch_tenths: int = 10
) -> None:
    """Generate once per size, seed and older history; later runs roll the tables back to the generated snapshots.

    `batch_tenths` < 10 keeps the late records of only that many tenths of the late accounts (by a
    hash of the account): a smaller batch on the very same tables, undone by the next roll-back.
    """
    session = spark_resource.session
    baseline = spark_resource.table("bench_baseline")
    if not session.catalog.tableExists(baseline):
        _generate(spark_resource, lakehouse, accounts, seed, older)
    lakehouse.rollback({r["table"]: r["snapshot_id"] for r in session.table(baseline).collect()})
    lakehouse.reset_watermark()
    if batch_tenths < 10:  # the watermark as Spark prints it: read back in the same session time zone
        files = f"{lakehouse.name(lakehouse.summary_table)}.files"
        applied = session.sql(f"SELECT string(max(readable_metrics.base_ts.upper_bound)) FROM {files}").first()
        assert applied is not None and applied[0] is not None
        session.sql(
            f"DELETE FROM {lakehouse.name(lakehouse.accounts_table)} WHERE base_ts > TIMESTAMP '{applied[0]}'"
            f" AND pmod(xxhash64(cons_acct_key), 10) >= {batch_tenths}"
        )


def _generate(spark_resource: SparkIceberg, lakehouse: Lakehouse, accounts: int, seed: int, older: int) -> None:
    """Generate and write the tables, and keep their snapshots as the baseline every workload starts from."""
    session = spark_resource.session
    baseline = spark_resource.table("bench_baseline")
    tables = [lakehouse.accounts_table, lakehouse.summary_table, lakehouse.latest_table]
    print(f"generating {accounts} accounts × 36 months, {older} older months (seed {seed}) …", flush=True)
    data = generate(
        session,
        accounts=accounts,
        months=36,
        end_month=END_MONTH,
        seed=seed,
        older_months=older,
        layout=lakehouse.layout,
    )
    write(data, lakehouse)
    rows = [(t, lakehouse.snapshot_id(t)) for t in tables]
    session.createDataFrame(rows, "table string, snapshot_id bigint").writeTo(baseline).createOrReplace()


def check_sample(spark: SparkSession, lakehouse: Lakehouse, late_accounts: list[int], applied: dt.datetime) -> int:
    """Recompute the sampled accounts in the reference model and compare every summary row.

    The model sees what the generated summary holds as one run (records up to `applied`), then the
    late batch as a second run, exactly as the pipeline did.
    """
    accounts = spark.table(lakehouse.name(lakehouse.accounts_table)).where(F.col("cons_acct_key").isin(late_accounts))
    records = [r.asDict() for r in accounts.collect()]
    layout = yaml.safe_load(Path(lakehouse.layout_file).read_text()) if lakehouse.layout_file else None
    model = ReferenceModel(layout)
    model.deliver(r for r in records if r["base_ts"] <= applied)
    model.run()
    model.deliver(r for r in records if r["base_ts"] > applied)
    model.run()
    actual = {
        (r["cons_acct_key"], r["rpt_as_of_mo"]): r.asDict(True)
        for r in spark.table(lakehouse.name(lakehouse.summary_table))
        .where(F.col("cons_acct_key").isin(late_accounts))
        .select(*lakehouse.layout.summary_columns)
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


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Wall time of each step of a run, from its STEP_START and STEP_SUCCESS/FAILURE events."""
    started: dict[str, float] = {}
    out: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            out[event.step_key] = entry.timestamp - started[event.step_key]
    return out


@dataclass
class Measured:
    """One workload measured: its sizes, the floor and backfill phases, and the reference check."""

    summary_rows: int
    late: int
    changed: int
    partitions: tuple[str, str]
    floor: Phase
    floor_after: Phase
    backfill: Phase
    steps: dict[str, float]
    checked_accounts: int
    checked_rows: int
    every_account: bool
    write_mode: str
    verify: Phase | None = None  # `backfill-assets verify` of both tables after the backfill
    verify_broken: int = 0
    compact: Phase | None = None  # `backfill-assets compact` after the backfill (merge-on-read)
    ratios: tuple[float, ...] = ()  # of every repeated run, when this is the median one

    @property
    def floor_seconds(self) -> float:
        return (self.floor.seconds + self.floor_after.seconds) / 2

    @property
    def ratio(self) -> float:
        return self.backfill.seconds / self.floor_seconds


def _layout_name(layout_file: str) -> str:
    """A namespace-safe name of a layout file (its stem): each layout has tables of its own."""
    return re.sub(r"[^a-z0-9]+", "_", Path(layout_file).stem.lower())


def measure(
    size: str,
    seed: int,
    older: int,
    sample: int | None,
    conf: dict[str, str],
    batch_tenths: int = 10,
    layout_file: str = "",
) -> Measured:
    """Generate or reset the workload, warm up, then time the floor, the backfill and the floor again, and check.

    The floor is timed before and after the backfill (both read the summary as it was before it),
    and the ratio takes their mean: this machine's speed drifts within minutes.
    """
    suffix = (f"_older{older}" if older else "") + (f"_{_layout_name(layout_file)}" if layout_file else "")
    spark_resource = SparkIceberg(namespace=f"bench_{size}_{seed}{suffix}", extra_conf=conf)
    lakehouse = Lakehouse(spark=spark_resource, layout_file=layout_file)
    spark = spark_resource.session
    meter = Meter(spark)
    workload(spark_resource, lakehouse, SIZES[size], seed, older, batch_tenths)
    lakehouse.ensure_tables()

    applied = lakehouse.watermark()
    assert applied is not None
    months = lakehouse.pending_months(applied)
    first, last = months[0], min(add_months(months[-1], lakehouse.layout.reach), END_MONTH)
    summary = lakehouse.read(lakehouse.summary_table, lakehouse.snapshot_id(lakehouse.summary_table))
    summary_rows = summary.count()
    affected = summary.where(F.col("rpt_as_of_mo").between(first, last))
    scratch = spark_resource.table("bench_floor")
    # warm-up, counted for neither side: the first read of the files also warms the OS page cache
    affected.write.format("noop").mode("overwrite").save()

    def floor() -> None:
        affected.writeTo(scratch).partitionedBy(F.col("rpt_as_of_mo")).createOrReplace()

    _, floor_phase = meter.measure(floor)
    instance = dg.DagsterInstance.ephemeral()
    report, run_phase = meter.measure(lambda: run_pending(build_defs(spark_resource, lakehouse), instance))
    assert report.success, report.lines()
    assert report.run_id is not None
    _, floor_after = meter.measure(floor)
    reports, verify_phase = meter.measure(
        lambda: verify(
            lakehouse.read(lakehouse.summary_table), lakehouse.read(lakehouse.latest_table), lakehouse.layout
        )
    )
    late = spark.table(spark_resource.table("classified_accounts")).select("cons_acct_key").distinct()
    if sample is not None:
        late = late.orderBy(F.hash("cons_acct_key")).limit(sample)
    late_accounts = [r[0] for r in late.collect()]
    return Measured(
        summary_rows=summary_rows,
        late=report.metadata.get("classified_accounts", {}).get("records", 0),
        changed=report.metadata.get("summary_backfilled", {}).get("summary_rows_written", 0),
        partitions=(first, last),
        floor=floor_phase,
        floor_after=floor_after,
        backfill=run_phase,
        steps=step_seconds(instance, report.run_id),
        checked_accounts=len(late_accounts),
        checked_rows=check_sample(spark, lakehouse, late_accounts, applied),
        every_account=sample is None,
        write_mode=lakehouse.write_mode,
        verify=verify_phase,
        verify_broken=sum(len(r.problems) for r in reports),
        compact=meter.measure(lambda: compact(lakehouse, f"bench-compact-{report.run_id}"))[1],
    )


def print_table(title: str, m: Measured) -> None:
    mib = 1024 * 1024
    f, b = m.floor, m.backfill
    rows = [
        ("summary rows", f"{m.summary_rows:,}", ""),
        ("late records (winners)", f"{m.late:,}", ""),
        ("summary rows changed", f"{m.changed:,}", ""),
        ("affected partitions", f"{m.partitions[0]} … {m.partitions[1]}", ""),
        ("seconds (floor: mean)", f"{m.floor_seconds:.1f}", f"{b.seconds:.1f}"),
        ("spark jobs", str(f.jobs), str(b.jobs)),
        ("bytes read incl. cache (MiB)", f"{f.read_bytes / mib:.1f}", f"{b.read_bytes / mib:.1f}"),
        ("bytes read per changed row", "", f"{b.read_bytes / max(m.changed, 1):,.0f}"),
        ("bytes written (MiB)", f"{f.written_bytes / mib:.1f}", f"{b.written_bytes / mib:.1f}"),
        ("shuffle written (MiB)", f"{f.shuffle_bytes / mib:.1f}", f"{b.shuffle_bytes / mib:.1f}"),
        ("driver heap in use, peak (MiB)", f"{f.jvm_heap_peak / mib:.0f}", f"{b.jvm_heap_peak / mib:.0f}"),
        (
            "driver heap after GC (MiB)",
            f"{f.jvm_heap_after_gc_peak / mib:.0f}",
            f"{b.jvm_heap_after_gc_peak / mib:.0f}",
        ),
    ]
    print(f"\n{title} (MERGE mode {m.write_mode})")
    print(f"{'':30} {'floor':>16} {'backfill':>16}")
    for name, a, c in rows:
        print(f"{name:30} {a:>16} {c:>16}")
    print(f"{'ratio backfill / floor':30} {m.ratio:>33.2f}")
    print(f"floor seconds before / after the backfill: {f.seconds:.1f} / {m.floor_after.seconds:.1f}")
    if len(m.ratios) > 1:
        ratios = ", ".join(f"{r:.2f}" for r in m.ratios)
        print(f"ratios of {len(m.ratios)} runs in turn: {ratios} (the table shows the median run)")
    print("seconds per step: " + ", ".join(f"{k} {v:.1f}" for k, v in m.steps.items()))
    if m.verify is not None:
        v = m.verify
        print(
            f"verify (both tables, whole): {v.seconds:.1f} s, ratio to the floor {v.seconds / m.floor_seconds:.2f},"
            f" {v.jobs} spark jobs, shuffle {v.shuffle_bytes / mib:.1f} MiB, rules broken {m.verify_broken}"
        )
    if m.compact is not None:
        k = m.compact
        print(
            f"compact after the backfill: {k.seconds:.1f} s, ratio to the floor {k.seconds / m.floor_seconds:.2f},"
            f" {k.jobs} spark jobs, read {k.read_bytes / mib:.1f} MiB, written {k.written_bytes / mib:.1f} MiB"
        )
    print(
        f"reference check: {m.checked_accounts} late accounts ({'every one' if m.every_account else 'a sample'}),"
        f" {m.checked_rows} summary rows equal the model"
    )


def median_run(runs: list[Measured]) -> Measured:
    """The run of the median ratio (the lower middle one of an even number), with every run's ratio."""
    median = sorted(runs, key=lambda r: r.ratio)[(len(runs) - 1) // 2]
    return dataclasses.replace(median, ratios=tuple(r.ratio for r in runs))


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--size", choices=SIZES, default="small")
    args.add_argument("--seed", type=int, default=7)
    args.add_argument(
        "--sample",
        type=int,
        help="late accounts checked against the reference model (default: every one up to small, 1,000 at medium)",
    )
    args.add_argument(
        "--older-months",
        type=int,
        default=24,
        help="second workload: the same accounts and batch with this many more months of older history (0: skip)",
    )
    args.add_argument(
        "--small-batch",
        type=int,
        default=1,
        choices=range(10),
        metavar="TENTHS",
        help="a workload with this many tenths of the generated batch on the same tables (default 1: 1 %% of the"
        " accounts against 10 %%; 0: skip)",
    )
    args.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each workload this many times and print the run of the median ratio (a noisy machine)",
    )
    args.add_argument(
        "--layout",
        default=os.environ.get("BACKFILL_LAYOUT", ""),
        metavar="FILE",
        help="summary layout file (default: $BACKFILL_LAYOUT, else the default layout); its own tables",
    )
    args.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for floor and backfill alike (repeatable), e.g. spark.sql.adaptive.enabled=false",
    )
    opts = args.parse_args(argv)
    if opts.repeat < 1:
        args.error("--repeat must be at least 1")
    conf = dict(c.split("=", 1) for c in opts.conf)
    accounts = f"{SIZES[opts.size]:,} accounts"
    sample = opts.sample if opts.sample is not None else SAMPLES[opts.size]

    def measured(older: int, tenths: int = 10) -> Measured:
        return median_run(
            [measure(opts.size, opts.seed, older, sample, conf, tenths, opts.layout) for _ in range(opts.repeat)]
        )

    base = measured(0)
    smaller = measured(0, opts.small_batch) if opts.small_batch else None
    older = measured(opts.older_months) if opts.older_months else None
    layout = f", layout {opts.layout}" if opts.layout else ""
    print_table(f"backfill benchmark: size {opts.size} ({accounts} × 36 months), seed {opts.seed}{layout}", base)
    if smaller is not None:
        print_table(f"the same tables with {opts.small_batch} tenth(s) of the batch", smaller)
        s, b = smaller.backfill, base.backfill
        print(
            f"smaller batch: {smaller.late:,} late records against {base.late:,}, backfill {s.seconds:.1f} s against"
            f" {b.seconds:.1f} s (ratio {s.seconds / b.seconds:.2f}), bytes read per changed row"
            f" {s.read_bytes / max(smaller.changed, 1):,.0f} against {b.read_bytes / max(base.changed, 1):,.0f}"
        )
    if older is not None:
        print_table(f"the same batch with {opts.older_months} more months of older history", older)
        print(
            f"older history: backfill {older.backfill.seconds:.1f} s against {base.backfill.seconds:.1f} s"
            f" (ratio {older.backfill.seconds / base.backfill.seconds:.2f})"
        )
    if conf:
        print("spark settings: " + ", ".join(f"{k}={v}" for k, v in conf.items()))
    py_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"python process peak RSS (MiB): {py_peak / (1024 * 1024):.0f}")


if __name__ == "__main__":
    main()
