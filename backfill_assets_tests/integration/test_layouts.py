"""The pipeline under other layouts (docs/spec.md §8): a wide bureau table and a 24-month profile against the
reference model, a stored table that does not match the layout, and a carried column added to a live table."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from backfill_assets import cli
from backfill_assets.contracts.layout import load_layout
from backfill_assets.definitions import build_defs
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import run_pending
from backfill_assets.transforms.verify import verify
from backfill_assets_tests.fixtures import MONTHS, Lake, carried_values, random_batch, record
from backfill_assets_tests.reference_model import deleted

LAYOUTS = Path(__file__).resolve().parents[2] / "docs" / "layouts"
SEEDS = [int(s) for s in os.environ.get("BACKFILL_LAYOUT_SEEDS", "1,2").split(",")]
FORWARD = ["2026-01", "2026-02", "2026-04"]


def layout_lake(spark: SparkSession, spark_resource: SparkIceberg, name: str) -> tuple[Lake, dict[str, Any]]:
    path = LAYOUTS / f"{name}.yaml"
    return Lake(spark, spark_resource, layout_file=str(path)), yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", ["wide", "24-months"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_batches_under_a_layout_match_the_reference_model(
    spark: SparkSession, spark_resource: SparkIceberg, name: str, seed: int
) -> None:
    """Two runs: history and late records, then more late records with forward months and a new one-month
    account (Case I); every case and deletions occur, and after each run both tables equal the model's."""
    rng = random.Random(seed)
    lake, layout = layout_lake(spark, spark_resource, name)
    batches = [
        random_batch(rng, range(1, 11), MONTHS, 60, layout),
        random_batch(rng, range(1, 14), MONTHS, 30, layout) + random_batch(rng, range(1, 16), FORWARD, 16, layout),
    ]
    batches[-1].append(record(99, "2026-03", carried=carried_values(rng, layout)))  # the newest base_ts
    assert lake.apply_each(batches) == {"I", "II", "III", "IV"}
    assert any(deleted(r["soft_del_cd"]) for r in lake.model.winner.values())
    rows = lake.rows("summary")
    assert {len(r["balance_am_history"]) for r in rows.values() if r["balance_am_history"]} == {
        layout["history_length"]
    }
    if name == "wide":  # carried columns arrive with values, NULLs and sentinels made NULL
        assert any(r["charge_off_am"] is not None for r in rows.values())
        assert any(r["high_credit_am_history"] and None in r["high_credit_am_history"] for r in rows.values())
    tables = [spark.table(lake.table(t)) for t in ("summary", "latest_summary")]
    assert [r.problems for r in verify(*tables, lake.layout)] == [[], []]


@pytest.fixture(scope="module")
def default_lake(spark: SparkSession, spark_resource: SparkIceberg) -> Lake:
    """A warehouse built under the default layout: one run over a random batch."""
    lake = Lake(spark, spark_resource)
    lake.deliver(random_batch(random.Random(7), range(1, 6), MONTHS[-12:], 25))
    lake.run()
    return lake


def test_a_stored_table_not_matching_the_layout_stops_the_run_before_writing(default_lake: Lake) -> None:
    """The default lake's tables under the wide layout: refused at the first step, naming table and column."""
    wide = Lakehouse(spark=default_lake.resource, layout_file=str(LAYOUTS / "wide.yaml"))
    default_lake.deliver([record(1, MONTHS[-1])])
    before = {t: default_lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_state", "backfill_rejects")}
    report = run_pending(build_defs(default_lake.resource, wide), default_lake.instance)
    assert not report.success
    assert "accounts_all: column high_credit_am: column_in_dataframe" in report.error, report.error
    assert {t: default_lake.snapshot(t) for t in before} == before
    default_lake.run()  # under its own layout the record applies: nothing was left half-done
    default_lake.assert_matches_model()


def test_a_carried_column_added_to_a_live_table(default_lake: Lake, tmp_path: Path) -> None:
    """docs/configuration.md, "Adding a column to the layout": refused until the tables have the column; then
    the rows a run rewrites carry it, and the others keep NULL until they are rewritten."""
    layout = {**yaml.safe_load((LAYOUTS / "default.yaml").read_text())}
    layout["scalars"] = {**layout["scalars"], "status_at_open_cd": {"from": "acct_stat_cd", "type": "string"}}
    path = tmp_path / "layout.yaml"
    path.write_text(yaml.safe_dump(layout))
    lakehouse = Lakehouse(spark=default_lake.resource, layout_file=str(path))
    defs = build_defs(default_lake.resource, lakehouse)
    default_lake.deliver([record(2, MONTHS[-3], acct_stat_cd="13")])
    before = {t: default_lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_state")}
    refused = run_pending(defs, default_lake.instance)
    assert not refused.success
    assert "summary: column status_at_open_cd: the layout has this string column, the stored table has not" in (
        refused.error
    ), refused.error
    assert {t: default_lake.snapshot(t) for t in before} == before

    for table in ("summary", "latest_summary"):  # the procedure: a metadata change, no data file rewritten
        default_lake.spark.sql(f"ALTER TABLE {default_lake.table(table)} ADD COLUMN status_at_open_cd string")
    report = run_pending(defs, default_lake.instance)
    assert report.success, report.lines()
    default_lake.model.run()
    rows = default_lake.rows("summary")  # the default layout's columns: as the model has them
    default_lake.assert_matches_model()
    carried = {
        (r["cons_acct_key"], r["rpt_as_of_mo"]): r["status_at_open_cd"]
        for r in default_lake.spark.table(default_lake.table("summary")).collect()
    }
    written = {k for k, v in carried.items() if v is not None}
    assert (2, MONTHS[-3]) in written and carried[(2, MONTHS[-3])] == "13"
    assert all(k[0] == 2 and k[1] >= MONTHS[-3] for k in written)  # the rows the record reached
    assert all(carried[k] == rows[k]["acct_stat_cd"] for k in written)
    assert len(written) < len(carried)  # rows no run rewrote keep NULL


def test_the_commands_under_the_wide_layout(
    spark: SparkSession, spark_resource: SparkIceberg, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """generate, run, verify, explain, export and import: every table with the wide layout's columns, the
    generated late batch applied, the audit clean, and a summary file that round-trips exactly."""
    fields = {k: getattr(spark_resource, k) for k in SparkIceberg.model_fields}
    resource = SparkIceberg(**{**fields, "namespace": f"t_{uuid.uuid4().hex[:10]}"})
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {resource.catalog}.{resource.namespace}")
    path = str(LAYOUTS / "wide.yaml")
    wide = load_layout(path)

    def run(*argv: str) -> int:
        return cli.main(list(argv), spark=resource, layout_file=path)

    assert run("generate", "--accounts", "12", "--months", "38", "--end-month", "2024-12", "--seed", "3") == 0
    for table, schema in wide.schemas.items():
        assert spark.table(resource.table(table)).schema.fieldNames() == schema.fieldNames(), table
    assert run("run") == 0
    verified, out = run("verify"), capsys.readouterr().out
    assert verified == 0 and out.count("rows checked, every rule holds") == 2, out
    summary = spark.table(resource.table("summary"))
    key = summary.where("rpt_as_of_mo = '2024-12'").orderBy("cons_acct_key").first()
    assert key is not None
    assert run("explain", str(key["cons_acct_key"]), "2024-12") == 0
    assert "high_credit_am_history" in capsys.readouterr().out.splitlines()[1]
    before = sorted(summary.collect())
    assert any(r["open_dt"] is not None and r["charge_off_am"] is not None for r in before)
    exported = str(tmp_path / "summary.parquet")
    assert run("export", "summary", exported) == 0
    assert run("import", "summary", exported, "--replace") == 0
    assert sorted(spark.table(resource.table("summary")).collect()) == before
