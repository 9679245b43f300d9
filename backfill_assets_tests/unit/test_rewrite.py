"""`rewrite`: histories of rewritten rows from scalars and one base row per account, against the reference model."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from backfill_assets.contracts.tables import ACCOUNTS_ALL, SUMMARY
from backfill_assets.transforms.apply import changed_latest_rows, written_rows
from backfill_assets.transforms.classify import classify, winners
from backfill_assets.transforms.rewrite import OLD_COLUMNS, rewrite
from backfill_assets.transforms.windows import join_windows
from backfill_assets_tests.fixtures import MONTHS, SCENARIOS, next_ts, random_batch, scenario_history, scenario_late
from backfill_assets_tests.reference_model import ReferenceModel, deleted

Rec = dict[str, Any]
A, M = "cons_acct_key", "rpt_as_of_mo"


def frame(spark: SparkSession, rows: list[Rec], schema: Any) -> DataFrame:
    return spark.createDataFrame([tuple(r.get(c) for c in schema.fieldNames()) for r in rows], schema)


def rewritten(spark: SparkSession, model: ReferenceModel, batch: list[Rec]) -> tuple[list[Rec], list[Rec]]:
    """The written summary rows and changed latest rows for `batch` on the model's state, reading no old array
    but those of each account's base row."""
    summary = frame(spark, list(model.summary().values()), SUMMARY)
    latest = frame(spark, list(model.latest().values()), SUMMARY)
    classified = classify(winners(frame(spark, batch, ACCOUNTS_ALL)), latest)
    joined = join_windows(classified, summary.select(A, M, "soft_del_cd")).cache()
    accounts = joined.select(A).distinct()
    first = joined.groupBy(A).agg(F.min(F.struct(M, "base_mo")).alias("_f"))
    base_keys = first.select(A, F.col("_f.base_mo").alias(M)).where(F.col(M).isNotNull())
    updated = rewrite(
        joined,
        summary.select(*OLD_COLUMNS).join(accounts, A, "left_semi"),
        summary.join(base_keys, [A, M], "left_semi"),
        latest.join(accounts, A, "left_semi"),
    ).cache()
    return [r.asDict(True) for r in written_rows(updated).collect()], [
        r.asDict(True) for r in changed_latest_rows(updated).collect()
    ]


def assert_rewrite_matches_model(spark: SparkSession, model: ReferenceModel, batch: list[Rec]) -> None:
    before, latest_before = model.summary(), model.latest()
    written, latest = rewritten(spark, model, batch)
    model.deliver(batch)
    model.run()
    after = model.summary()
    got = {(r[A], r[M]): r for r in written}
    for key, want in after.items():
        if before.get(key) != want:
            assert key in got, key
    for key, row in got.items():
        want = after[key]
        assert row["soft_del_cd"] == want["soft_del_cd"], key
        if not deleted(want["soft_del_cd"]):
            assert row == want, (key, {c: (row[c], want[c]) for c in want if row[c] != want[c]})
    want_latest = {a: r for a, r in model.latest().items() if latest_before.get(a) != r}
    got_latest = {r[A]: r for r in latest}
    assert set(want_latest) <= set(got_latest)
    for a, row in got_latest.items():
        assert row[M] == model.latest()[a][M], a


@pytest.mark.parametrize("seed", range(6))
def test_rewrite_equals_reference(spark: SparkSession, seed: int) -> None:
    rng = random.Random(seed)
    model = ReferenceModel()
    model.deliver(random_batch(rng, range(1, 9), MONTHS, 60))
    model.run()
    assert_rewrite_matches_model(spark, model, random_batch(rng, range(1, 12), MONTHS, 30))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_through_rewrite(spark: SparkSession, scenario: str) -> None:
    account = SCENARIOS[scenario]
    model = ReferenceModel()
    model.deliver(r for r in scenario_history() if r["cons_acct_key"] == account)
    model.run()
    ts = {name: next_ts() for name in ("ts", "tie")}
    late = [r for r in scenario_late(ts) if r["cons_acct_key"] == account]
    assert_rewrite_matches_model(spark, model, late)
