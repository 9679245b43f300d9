"""The `backfill-assets` command line (docs/spec.md §6), called in-process on a namespace of its own per test."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from backfill_assets import cli
from backfill_assets.resources.lakehouse import STATE_DDL, Lakehouse
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets_tests.fixtures import (
    ACCOUNTS_ALL,
    SUMMARY,
    SUMMARY_COLUMNS,
    account_row,
    frame,
    summary_row,
)

T = dt.datetime(2024, 3, 5, 6, 7, 8, 123456)


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """`backfill-assets` on one namespace, with helpers to look at its tables."""

    def __init__(self, spark: SparkSession, base: SparkIceberg, capsys: pytest.CaptureFixture[str], tmp: Path):
        self.spark, self.capsys, self.tmp = spark, capsys, tmp
        fields = {k: getattr(base, k) for k in SparkIceberg.model_fields}
        self.resource = SparkIceberg(**{**fields, "namespace": f"cli_{uuid.uuid4().hex[:10]}"})
        self.lakehouse = Lakehouse(spark=self.resource)

    def __call__(self, *argv: str) -> Result:
        self.capsys.readouterr()
        code = cli.main(list(argv), spark=self.resource)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def parquet(self, df: DataFrame) -> str:
        path = str(self.tmp / f"in_{uuid.uuid4().hex[:8]}")
        df.write.parquet(path)
        return path

    def rows(self, table: str) -> list[Row]:
        return sort(self.spark.table(self.resource.table(table)).collect())

    def snapshot(self, table: str) -> int | None:
        return self.lakehouse.snapshot_id(table)

    def snapshots(self, table: str) -> int:
        return self.spark.table(f"{self.resource.table(table)}.snapshots").count()


def sort(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r["cons_acct_key"], r["rpt_as_of_mo"], r["base_ts"] or dt.datetime.min))


def one_line(result: Result) -> str:
    """The refusal: exactly one stderr line, `backfill-assets: …`, and no traceback."""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("backfill-assets: "), lines[0]
    assert "Traceback" not in result.err
    return lines[0]


@pytest.fixture
def run_cli(
    spark: SparkSession, spark_resource: SparkIceberg, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Cli:
    return Cli(spark, spark_resource, capsys, tmp_path)


def accounts_df(spark: SparkSession, rows: list[dict[str, Any]]) -> DataFrame:
    return frame(spark, rows, ACCOUNTS_ALL)


def summary_df(spark: SparkSession, rows: list[dict[str, Any]]) -> DataFrame:
    return frame(spark, rows, SUMMARY)


ACCOUNTS = [
    account_row(1, "2024-01"),
    account_row(1, "2024-01", base_ts=T + dt.timedelta(microseconds=1), insert_ts=T, soft_del_cd="4"),
    account_row(2, "2023-12", acct_credit_ext_am=None, acct_bal_am=-2147483647, acct_stat_cd=None, update_ts=None),
    account_row(3, "2024-02", soft_del_cd="", days_past_due_ct_4in=-1, asset_class_cd_4in="05"),
]
SUMMARIES = [
    summary_row(1, "2024-01"),
    summary_row(1, "2024-02", balance_am=None, base_ts=None, balance_am_history=[None] * 36),
    summary_row(2, "2024-01", soft_del_cd="1", past_due_am_history=None, payment_history_grid=None),
    summary_row(3, "2023-11", asset_class_cd_4in_history=["L", *[None] * 34, "S"]),
]


# ---------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("table", "rows"), [("accounts_all", ACCOUNTS), ("summary", SUMMARIES)])
def test_import_export_round_trip_is_exact(run_cli: Cli, table: str, rows: list[dict[str, Any]]) -> None:
    source = frame(run_cli.spark, rows, ACCOUNTS_ALL if table == "accounts_all" else SUMMARY)
    expected = sort(source.collect())
    result = run_cli("import", table, run_cli.parquet(source))
    assert result.code == 0, result.err
    assert f"appended {len(rows)} rows" in result.out
    assert run_cli.rows(table) == expected
    out = str(run_cli.tmp / "out")
    result = run_cli("export", table, out)
    assert result.code == 0, result.err
    exported = run_cli.spark.read.parquet(out)
    assert exported.columns == list(source.columns)
    assert sort(exported.collect()) == expected
    # other readers get UTC instants, not Spark's legacy INT96
    assert pq.read_table(out).schema.field("base_ts").type == pa.timestamp("us", tz="UTC")
    # and the exported folder imports back unchanged (into a fresh table, via --replace)
    assert run_cli("import", table, out, "--replace").code == 0
    assert run_cli.rows(table) == expected


def test_latest_summary_is_unpartitioned_and_accounts_partitioned(run_cli: Cli) -> None:
    latest = summary_df(run_cli.spark, [summary_row(1, "2024-01"), summary_row(2, "2024-03")])
    assert run_cli("import", "latest_summary", run_cli.parquet(latest)).code == 0
    assert run_cli("import", "accounts_all", run_cli.parquet(accounts_df(run_cli.spark, ACCOUNTS))).code == 0
    spark, name = run_cli.spark, run_cli.resource.table
    assert "partition" not in spark.table(f"{name('latest_summary')}.partitions").columns
    assert spark.table(f"{name('accounts_all')}.partitions").select("partition.rpt_as_of_mo").count() == 3


# ------------------------------------------------------------------------------------------- refusals


@dataclass(frozen=True)
class Bad:
    table: str
    column: str
    make: Callable[[SparkSession], DataFrame]
    example: str | None = None  # the key the message must name


BAD = {
    "missing column": Bad("accounts_all", "base_ts", lambda s: accounts_df(s, ACCOUNTS).drop("base_ts")),
    "string timestamp": Bad(
        "accounts_all",
        "base_ts",
        lambda s: accounts_df(s, ACCOUNTS).withColumn("base_ts", F.col("base_ts").cast("string")),
    ),
    "bigint amount": Bad(
        "summary",
        "balance_am",
        lambda s: summary_df(s, SUMMARIES).withColumn("balance_am", F.col("balance_am").cast("long")),
    ),
    "NULL key": Bad(
        "accounts_all",
        "cons_acct_key",
        lambda s: accounts_df(s, [*ACCOUNTS, account_row(None, "2024-05")]),
        "cons_acct_key=NULL, rpt_as_of_mo='2024-05'",
    ),
    "NULL base_ts": Bad(
        "accounts_all",
        "base_ts",
        lambda s: accounts_df(s, [*ACCOUNTS, account_row(8, "2024-05", base_ts=None)]),
        "cons_acct_key=8, rpt_as_of_mo='2024-05'",
    ),
    "month 13": Bad(
        "summary",
        "rpt_as_of_mo",
        lambda s: summary_df(s, [summary_row(7, "2024-05"), summary_row(9, "2024-13")]),
        "cons_acct_key=9, rpt_as_of_mo='2024-13'",
    ),
    "month without dash": Bad(
        "accounts_all",
        "rpt_as_of_mo",
        lambda s: accounts_df(s, [account_row(9, "202401")]),
        "cons_acct_key=9, rpt_as_of_mo='202401'",
    ),
    "array of 35": Bad(
        "summary",
        "credit_limit_am_history",
        lambda s: summary_df(
            s, [summary_row(7, "2024-05"), summary_row(9, "2024-06", credit_limit_am_history=[1] * 35)]
        ),
        "cons_acct_key=9, rpt_as_of_mo='2024-06'",
    ),
    "duplicate key": Bad(
        "summary",
        "cons_acct_key, rpt_as_of_mo",
        lambda s: summary_df(s, [summary_row(9, "2024-06"), summary_row(9, "2024-06", balance_am=1)]),
        "cons_acct_key=9, rpt_as_of_mo='2024-06'",
    ),
    "a column the layout lacks": Bad(
        "summary",
        "bureau_code",
        lambda s: summary_df(s, [summary_row(9, "2024-08")]).withColumn("bureau_code", F.lit("X")),
        None,
    ),
    "key already in the table": Bad(
        "summary",
        "cons_acct_key, rpt_as_of_mo",
        lambda s: summary_df(s, [summary_row(9, "2024-07"), summary_row(3, "2023-11")]),
        "cons_acct_key=3, rpt_as_of_mo='2023-11'",
    ),
}


@pytest.fixture(scope="module")
def loaded(spark: SparkSession, spark_resource: SparkIceberg, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One namespace whose accounts_all and summary already hold rows, shared by the refusal tests."""
    capsys: Any = None
    lake = Cli(spark, spark_resource, capsys, tmp_path_factory.mktemp("cli"))
    for table, df in (("accounts_all", accounts_df(spark, ACCOUNTS)), ("summary", summary_df(spark, SUMMARIES))):
        assert cli.main(["import", table, lake.parquet(df)], spark=lake.resource) == 0
    return lake


@pytest.mark.parametrize("case", list(BAD))
def test_refused_import_names_the_problem_and_writes_nothing(
    loaded: Cli, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    bad = BAD[case]
    loaded.capsys = capsys
    before_snapshot, before_rows = loaded.snapshot(bad.table), loaded.rows(bad.table)
    result = loaded("import", bad.table, loaded.parquet(bad.make(loaded.spark)))
    assert result.code == 2
    line = one_line(result)
    assert f"backfill-assets: {bad.table}: column {bad.column}: " in line
    if bad.example:
        assert bad.example in line
    assert loaded.snapshot(bad.table) == before_snapshot
    assert loaded.rows(bad.table) == before_rows
    assert result.out == ""


def test_refused_import_creates_no_table(run_cli: Cli) -> None:
    bad = summary_df(run_cli.spark, [summary_row(1, "2024-13")])
    assert run_cli("import", "summary", run_cli.parquet(bad)).code == 2
    assert not run_cli.spark.catalog.tableExists(run_cli.resource.table("summary"))


# ------------------------------------------------------------------------------------------- --replace


def test_replace_swaps_all_rows_in_one_commit_and_append_adds(run_cli: Cli) -> None:
    spark = run_cli.spark
    a = summary_df(spark, [summary_row(1, "2024-01"), summary_row(2, "2024-02")])
    b = summary_df(spark, [summary_row(3, "2023-01"), summary_row(1, "2024-01", balance_am=99)])
    c = summary_df(spark, [summary_row(4, "2024-05")])
    assert run_cli("import", "summary", run_cli.parquet(a)).code == 0
    assert run_cli.snapshots("summary") == 1
    result = run_cli("import", "summary", run_cli.parquet(b), "--replace")
    assert result.code == 0 and "replaced 2 rows" in result.out
    assert run_cli.snapshots("summary") == 2  # one commit: never a moment with no rows
    assert run_cli.rows("summary") == sort(b.collect())
    assert run_cli("import", "summary", run_cli.parquet(c)).code == 0
    assert run_cli.rows("summary") == sort(b.union(c).collect())
    # with --replace, keys already in the table are no clash
    assert run_cli("import", "summary", run_cli.parquet(c), "--replace").code == 0
    assert run_cli.rows("summary") == sort(c.collect())


def test_importing_summary_resets_the_applied_watermark(run_cli: Cli) -> None:
    """docs/spec.md §4.5: after import, the greatest base_ts in summary is what counts as applied."""
    run_cli.lakehouse.ensure_tables()
    state = run_cli.resource.table("backfill_state")
    marks = run_cli.spark.createDataFrame([(dt.datetime(2030, 1, 1), "r1", T, 1, 1)], STATE_DDL)
    marks.writeTo(state).append()
    assert run_cli.lakehouse.watermark() == dt.datetime(2030, 1, 1)
    assert run_cli("import", "summary", run_cli.parquet(summary_df(run_cli.spark, SUMMARIES))).code == 0
    assert run_cli.lakehouse.watermark() == T


# ------------------------------------------------------------------------------------ other failures


def test_export_of_a_missing_table_fails_cleanly(run_cli: Cli) -> None:
    result = run_cli("export", "latest_summary", str(run_cli.tmp / "out"))
    assert result.code == 1
    assert "latest_summary does not exist" in one_line(result)
    assert not (run_cli.tmp / "out").exists()


def test_export_from_a_copied_warehouse_fails_in_one_line(run_cli: Cli) -> None:
    """Iceberg metadata holds absolute paths: a copy of a warehouse whose original is gone cannot be read.

    The command says so, naming the table and what to do, instead of printing a Java stack trace.
    """
    original, copy = run_cli.tmp / "original", run_cli.tmp / "copy"
    fields = {k: getattr(run_cli.resource, k) for k in SparkIceberg.model_fields}
    suffix = uuid.uuid4().hex[:8]
    run_cli.resource = SparkIceberg(**{**fields, "catalog": f"orig_{suffix}", "warehouse": str(original)})
    assert run_cli("import", "summary", run_cli.parquet(summary_df(run_cli.spark, SUMMARIES))).code == 0
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    run_cli.resource = SparkIceberg(**{**fields, "catalog": f"copy_{suffix}", "warehouse": str(copy)})
    result = run_cli("export", "summary", str(run_cli.tmp / "out"))
    assert result.code == 1
    line = one_line(result)
    assert line.startswith(f"backfill-assets: export failed on table {run_cli.resource.namespace}.summary: ")
    assert "NotFoundException" in line and f"still points at {original}" in line
    assert "rewrite_table_path" in line
    assert result.out == ""


def test_missing_file_and_unknown_table_fail_cleanly(run_cli: Cli) -> None:
    result = run_cli("import", "summary", str(run_cli.tmp / "nowhere.parquet"))
    assert result.code == 1
    assert "cannot read parquet" in one_line(result)
    result = run_cli("import", "summaries", str(run_cli.tmp))
    assert result.code == 2
    assert "unknown table 'summaries'" in one_line(result)
    result = run_cli("generate", "--end-month", "202401")
    assert result.code == 2
    assert "--end-month" in one_line(result)
    assert run_cli("frobnicate").code == 2


def test_namespace_option_selects_the_tables(run_cli: Cli) -> None:
    assert run_cli("import", "summary", run_cli.parquet(summary_df(run_cli.spark, SUMMARIES))).code == 0
    out = str(run_cli.tmp / "out")
    run_cli.capsys.readouterr()
    code = cli.main(["--namespace", run_cli.resource.namespace, "export", "summary", out], spark=run_cli.resource)
    assert code == 0
    assert run_cli.spark.read.parquet(out).count() == len(SUMMARIES)


# ----------------------------------------------------------------------------------- run and generate


def test_run_with_nothing_pending(run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    empty = run_cli.spark.createDataFrame([], ACCOUNTS_ALL)
    assert run_cli("import", "accounts_all", run_cli.parquet(empty)).code == 0
    result = run_cli("run")
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["nothing to apply: accounts_all has no unapplied records"]


def test_run_without_source_table_fails_cleanly(run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = run_cli("run")
    assert result.code == 1
    assert one_line(result).startswith("backfill-assets: run failed: ")


def test_generate_writes_the_three_tables(run_cli: Cli) -> None:
    result = run_cli("generate", "--accounts", "6", "--months", "4", "--end-month", "2024-06", "--seed", "3")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        run_cli.resource.table(t) for t in ("accounts_all", "summary", "latest_summary")
    ]
    counts = {t: run_cli.spark.table(run_cli.resource.table(t)).count() for t in ("accounts_all", "latest_summary")}
    assert lines[0].endswith(f": {counts['accounts_all']} rows") and counts["accounts_all"] > 6
    assert lines[2].endswith(f": {counts['latest_summary']} rows")
    summary = run_cli.spark.table(run_cli.resource.table("summary"))
    assert summary.columns == list(SUMMARY_COLUMNS)
    assert summary.where("rpt_as_of_mo > '2024-06' OR rpt_as_of_mo < '2024-03'").count() == 0
    # and the generated tables pass import validation as they are
    out = str(run_cli.tmp / "summary")
    assert run_cli("export", "summary", out).code == 0
    assert run_cli("import", "summary", out, "--replace").code == 0


def test_compact_after_a_run_leaves_no_delete_files(run_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert run_cli("generate", "--accounts", "30", "--months", "6", "--end-month", "2024-06", "--seed", "3").code == 0
    assert run_cli("run").code == 0  # merge-on-read: the late batch leaves position deletes

    def delete_files(table: str) -> int:
        return run_cli.spark.table(f"{run_cli.resource.table(table)}.delete_files").count()

    assert delete_files("summary") > 0
    rows = run_cli.rows("summary")
    result = run_cli("compact")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"{run_cli.resource.table('summary')}: rewrote ") and "delete files" in lines[0]
    assert delete_files("summary") == 0 and delete_files("latest_summary") == 0
    assert run_cli.rows("summary") == rows
    snapshots = run_cli.snapshots("summary")
    again = run_cli("compact")  # nothing left to compact: no new snapshot
    assert again.code == 0 and "rewrote 0 data files" in again.out and run_cli.snapshots("summary") == snapshots
