"""The pipeline against the reference model on seeded random batches, over consecutive runs."""

from __future__ import annotations

import os
import random

import pytest
from pyspark.sql import SparkSession

from backfill_assets.jobs import BACKFILL_JOB, range_tags
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import MONTHS, Lake, random_batch

FORWARD = ["2026-01", "2026-02", "2026-04"]
SEEDS = [int(s) for s in os.environ.get("BACKFILL_SEEDS", "1,2,3").split(",")]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_batches_match_reference(spark: SparkSession, spark_resource: SparkIceberg, seed: int) -> None:
    rng = random.Random(seed)
    lake = Lake(spark, spark_resource)
    accounts = range(1, 13)
    batches = [
        random_batch(rng, accounts, MONTHS, 80),
        random_batch(rng, range(1, 16), MONTHS, 50),
        # then mostly forward months: Case II (chained), new accounts, deletes after the latest
        random_batch(rng, range(1, 18), FORWARD, 20),
    ]
    cases = lake.apply_each(batches)
    assert cases >= {"II", "III", "IV"}  # Case I (one month of a new account) is the rare one; see test_forward_months
    before = {t: lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_state")}
    assert lake.run().partitions is None
    assert {t: lake.snapshot(t) for t in before} == before
    if seed == SEEDS[0]:  # re-materialising processed partitions, as from the UI, changes nothing
        result = lake.defs.resolve_job_def(BACKFILL_JOB).execute_in_process(
            instance=lake.instance,
            tags=range_tags("2024-01", "2025-06"),
        )
        assert result.success
        assert {t: lake.snapshot(t) for t in before} == before
        lake.assert_matches_model()
