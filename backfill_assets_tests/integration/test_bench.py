"""The benchmark's meters: the heap a phase holds (not its garbage), and the median of repeated runs."""

from __future__ import annotations

import gc
import time

from pyspark.sql import SparkSession

from benchmarks.bench import HeapSampler, Measured, Phase, median_run

MIB = 1024 * 1024
CHUNK = 256 * 1024  # under half a G1 region: an ordinary object, not a humongous one needing contiguous free regions


def _phase(spark: SparkSession, heap: HeapSampler, hold_mib: int, garbage_mib: int) -> tuple[int, int]:
    """Heap in use and heap after GC, peaks of a phase that holds one array and drops others, then collects."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    with heap.sampling() as peaks:
        # byte[]s on the heap, kept alive by their py4j proxies; one 300 MiB array failed in CI on a fragmented heap
        held = [jvm.java.nio.ByteBuffer.allocate(CHUNK) for _ in range(hold_mib * MIB // CHUNK)]
        if garbage_mib:  # a string per row, each dropped at once (local mode: the tasks run in the driver JVM)
            spark.range(garbage_mib * 10_000).selectExpr("sum(length(repeat(string(id), 20)))").collect()
        heap.collect()
        time.sleep(0.3)
    del held
    gc.collect()
    return peaks[0], peaks[1]


def test_the_heap_after_collections_counts_what_a_phase_holds_and_not_its_garbage(spark: SparkSession) -> None:
    heap = HeapSampler(spark)
    _phase(spark, heap, hold_mib=0, garbage_mib=0)  # its collections let Spark's cleaner free what earlier tests left
    garbage_in_use, garbage_after_gc = _phase(spark, heap, hold_mib=0, garbage_mib=2000)
    _, idle_after_gc = _phase(spark, heap, hold_mib=0, garbage_mib=0)
    held_in_use, held_after_gc = _phase(spark, heap, hold_mib=300, garbage_mib=0)

    measured = {k: v // MIB for k, v in locals().items() if isinstance(v, int)}
    assert held_after_gc >= idle_after_gc + 250 * MIB, measured
    assert held_in_use >= held_after_gc, measured
    # about 2 GB of garbage made: seen in use, freed by the collections (what they left is the job's working set)
    assert garbage_after_gc <= idle_after_gc + 256 * MIB, measured
    assert garbage_in_use >= garbage_after_gc + 64 * MIB, measured


def _run(floor_before: float, backfill: float, floor_after: float) -> Measured:
    def phase(seconds: float) -> Phase:
        return Phase(
            seconds, jobs=1, read_bytes=0, written_bytes=0, shuffle_bytes=0, jvm_heap_peak=0, jvm_heap_after_gc_peak=0
        )

    return Measured(
        0, 0, 0, ("2026-01", "2026-09"), phase(floor_before), phase(floor_after), phase(backfill), {}, 0, 0, True, ""
    )


def test_a_heap_sample_makes_a_few_py4j_calls_and_no_java_exception(spark: SparkSession) -> None:
    heap = HeapSampler(spark)
    client = spark.sparkContext._gateway._gateway_client  # type: ignore[attr-defined]
    sent: list[str] = []
    send = client.send_command
    client.send_command = lambda command, *args, **kwargs: sent.append(command) or send(command, *args, **kwargs)
    try:
        assert heap.after_last_gcs(), "no collector reported a collection"
    finally:
        del client.send_command
    # PySpark classifies every Java exception with py4j's TypeUtil (how a py4j iteration of a Java set ends)
    assert not [c for c in sent if "TypeUtil" in c], sent
    assert len(sent) <= 12 * len(heap.collectors), len(sent)


def test_repeated_runs_report_the_run_of_the_median_ratio_against_the_mean_floor() -> None:
    runs = [_run(10, 30, 20), _run(10, 10, 10), _run(20, 20, 20), _run(4, 15, 6)]

    assert [r.ratio for r in runs] == [2.0, 1.0, 1.0, 3.0]
    median = median_run(runs)
    assert median.ratio == 1.0 and median.ratios == (2.0, 1.0, 1.0, 3.0)
    assert median_run(runs[:1] + runs[3:]).backfill.seconds == 30  # of 2.0 and 3.0, the lower
    assert median_run(runs[3:]).ratios == (3.0,)
