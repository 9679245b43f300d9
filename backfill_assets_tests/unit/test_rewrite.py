"""`rewrite`: histories of rewritten rows from scalars and one base row per account, against the reference model."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from backfill_assets.transforms.classify import classify, winners
from backfill_assets.transforms.rewrite import (
    changed_latest_rows,
    old_columns,
    rewrite,
    scalars_after,
    scalars_read,
    written_rows,
)
from backfill_assets.transforms.windows import join_windows
from backfill_assets_tests.fixtures import (
    ACCOUNTS_ALL,
    LAYOUT,
    MONTHS,
    SCENARIOS,
    SUMMARY,
    SUMMARY_COLUMNS,
    next_ts,
    random_batch,
    record,
    scenario_history,
    scenario_late,
)
from backfill_assets_tests.reference_model import ReferenceModel, deleted

Rec = dict[str, Any]
A, M = "cons_acct_key", "rpt_as_of_mo"


def frame(spark: SparkSession, rows: list[Rec], schema: Any) -> DataFrame:
    return spark.createDataFrame([tuple(r.get(c) for c in schema.fieldNames()) for r in rows], schema)


def updated_rows(spark: SparkSession, model: ReferenceModel, batch: list[Rec]) -> DataFrame:
    """`rewrite` for `batch` on the model's state, given no old array but those of each account's base row."""
    summary = frame(spark, list(model.summary().values()), SUMMARY)
    latest = frame(spark, list(model.latest().values()), SUMMARY)
    classified = classify(winners(frame(spark, batch, ACCOUNTS_ALL)), latest, LAYOUT)
    joined = join_windows(classified, summary.select(A, M, "soft_del_cd"), LAYOUT.reach).cache()
    accounts = joined.select(A).distinct()
    first = joined.groupBy(A).agg(F.min(F.struct(M, "base_mo")).alias("_f"))
    base_keys = first.select(A, F.col("_f.base_mo").alias(M)).where(F.col(M).isNotNull())
    return rewrite(
        joined,
        summary.select(*old_columns(LAYOUT)).join(accounts, A, "left_semi"),
        summary.join(base_keys, [A, M], "left_semi"),
        latest.join(accounts, A, "left_semi"),
        LAYOUT,
    ).cache()


def rewritten(spark: SparkSession, model: ReferenceModel, batch: list[Rec]) -> tuple[list[Rec], list[Rec]]:
    """The written summary rows and changed latest rows for `batch` on the model's state."""
    updated = updated_rows(spark, model, batch)
    return [r.asDict(True) for r in written_rows(updated).collect()], [
        r.asDict(True) for r in changed_latest_rows(updated).collect()
    ]


@dataclass
class Outcome:
    """The rows `rewrite` wrote for a batch, and the model's tables before and after the batch."""

    before: dict[tuple[int, str], Rec]
    latest_before: dict[int, Rec]
    written: list[Rec]
    latest: list[Rec]
    after: dict[tuple[int, str], Rec]
    latest_after: dict[int, Rec]


def outcome(spark: SparkSession, model: ReferenceModel, batch: list[Rec]) -> Outcome:
    before, latest_before = model.summary(), model.latest()
    written, latest = rewritten(spark, model, batch)
    model.deliver(batch)
    model.run()
    return Outcome(before, latest_before, written, latest, model.summary(), model.latest())


def assert_matches_model(o: Outcome, accounts: set[int] | None = None) -> None:
    """Every row the model changed is written, and written as the model has it (of `accounts`, default all)."""
    mine = (lambda a: True) if accounts is None else accounts.__contains__
    got = {(r[A], r[M]): r for r in o.written if mine(r[A])}
    for key, want in o.after.items():
        if mine(key[0]) and o.before.get(key) != want:
            assert key in got, key
    for key, row in got.items():
        want = o.after[key]
        assert row["soft_del_cd"] == want["soft_del_cd"], key
        if not deleted(want["soft_del_cd"]):
            assert row == want, (key, {c: (row[c], want[c]) for c in want if row[c] != want[c]})
    want_latest = {a: r for a, r in o.latest_after.items() if mine(a) and o.latest_before.get(a) != r}
    got_latest = {r[A]: r for r in o.latest if mine(r[A])}
    assert set(want_latest) <= set(got_latest)
    for a, row in got_latest.items():
        assert row[M] == o.latest_after[a][M], a


@pytest.mark.parametrize("seed", range(6))
def test_rewrite_equals_reference(spark: SparkSession, seed: int) -> None:
    rng = random.Random(seed)
    model = ReferenceModel()
    model.deliver(random_batch(rng, range(1, 9), MONTHS, 60))
    model.run()
    assert_matches_model(outcome(spark, model, random_batch(rng, range(1, 12), MONTHS, 30)))


@pytest.fixture(scope="module")
def scenarios(spark: SparkSession) -> Outcome:
    """Every hand-written scenario in one rewrite (each owns its account): a rewrite per scenario cost 13 s each."""
    model = ReferenceModel()
    model.deliver(scenario_history())
    model.run()
    return outcome(spark, model, scenario_late({name: next_ts() for name in ("ts", "tie")}))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_through_rewrite(scenarios: Outcome, scenario: str) -> None:
    account = SCENARIOS[scenario]
    assert any(r[A] == account for r in scenarios.written), "the scenario writes rows"
    assert_matches_model(scenarios, {account})


def test_written_rows_have_summary_columns(spark: SparkSession) -> None:
    written, _ = rewritten(spark, ReferenceModel(), [record(1, "2024-01")])
    assert list(written[0]) == list(SUMMARY_COLUMNS)


def _keyed(df: DataFrame, *key: str) -> dict[Any, Rec]:
    rows = [r.asDict(True) for r in df.collect()]
    keyed = {tuple(r[k] for k in key): r for r in rows}
    assert len(keyed) == len(rows), "one row per key"
    return keyed


@pytest.mark.parametrize("seed", range(3))
def test_the_scalars_read_and_after_the_run_come_from_the_gathered_rows(spark: SparkSession, seed: int) -> None:
    """What the agreement checks judge: the scalars of the summary rows read, exactly as stored, and after
    the run those of the model (rows written or not); each changed latest row is the model's."""
    rng = random.Random(seed)
    model = ReferenceModel()
    model.deliver(random_batch(rng, range(1, 9), MONTHS, 60))
    model.run()
    batch = random_batch(rng, range(1, 12), MONTHS, 30)
    scalars = old_columns(LAYOUT)[2:]
    before = {k: {c: r.get(c) for c in scalars} for k, r in model.summary().items()}  # as the table holds them
    updated = updated_rows(spark, model, batch)
    read = _keyed(scalars_read(updated), A, M)
    assert read and all({c: r[c] for c in scalars} == before[k] for k, r in read.items())
    model.deliver(batch)
    model.run()
    after = {k: {c: r.get(c) for c in scalars} for k, r in model.summary().items()}
    got = _keyed(scalars_after(updated), A, M)
    assert set(got) <= set(after)
    assert {k: v for k, v in after.items() if before.get(k) != v}.keys() <= got.keys()
    for key, row in got.items():
        want = after[key]
        assert row["soft_del_cd"] == want["soft_del_cd"], key
        if not deleted(want["soft_del_cd"]):
            assert {c: row[c] for c in scalars} == want, key
    latest = _keyed(changed_latest_rows(updated), A)
    assert latest and all(row[M] == model.latest()[a][M] for (a,), row in latest.items())


def _above_caches(plan: str) -> list[str]:
    """The lines of a physical plan outside the plans of cached relations (those ran when cached)."""
    out, skip_deeper_than = [], None
    for line in plan.splitlines():
        depth = len(line) - len(line.lstrip(" :+-"))
        if skip_deeper_than is not None and depth > skip_deeper_than:
            continue
        skip_deeper_than = depth if "InMemoryRelation" in line else None
        out.append(line)
    return out


def test_the_checks_of_a_run_group_its_cached_rows_by_account_without_a_shuffle(spark: SparkSession) -> None:
    """The rewritten rows are cached partitioned by account: the agreement and uniqueness checks group
    and join them by account where they lie (a shuffle of the wide rows cost each check seconds)."""
    model = ReferenceModel()
    model.deliver([record(a, m) for a in (1, 2, 3) for m in MONTHS[:6]])
    model.run()
    updated = updated_rows(spark, model, [record(1, MONTHS[2]), record(2, MONTHS[7])])
    updated.count()
    newest = scalars_after(updated).groupBy(A).agg(F.max_by("balance_am", M).alias("b"))
    judged = changed_latest_rows(updated).join(newest, A).agg(F.count(F.lit(1)))
    unique = written_rows(updated).groupBy(A, M).count().agg(F.max("count"))
    for query in (judged, unique):
        query.collect()
        plan = query._jdf.queryExecution().executedPlan().toString()
        assert "InMemoryTableScan" in plan
        assert not [line for line in _above_caches(plan) if "Exchange hashpartitioning" in line], plan
