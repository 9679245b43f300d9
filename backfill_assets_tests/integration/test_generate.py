"""`generate` and `write`: determinism, the late batch's variety, and a summary the reference model agrees with."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from backfill_assets.generate import DELIVERY_DAYS, GeneratedData, generate, write
from backfill_assets.resources.lakehouse import Lakehouse
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.transforms.rebuild import latest_of
from backfill_assets_tests.fixtures import ACCOUNTS_ALL, SUMMARY, Record, assert_summary_equal, rows_by_key
from backfill_assets_tests.reference_model import SENTINELS, ReferenceModel, deleted, month_index

AMOUNTS = ("acct_credit_ext_am", "acct_bal_am", "past_due_am", "actual_pymt_am")
ACCOUNTS = 300


def make(spark: SparkSession, seed: int) -> GeneratedData:
    """48 months, so that some late months lie beyond the 36-month reach; half the accounts get late records."""
    return generate(spark, accounts=ACCOUNTS, months=48, end_month="2024-06", seed=seed, late_fraction=0.5)


@dataclass
class Collected:
    data: GeneratedData
    history: list[Record]
    late: list[Record]


def records(df: DataFrame) -> list[Record]:
    return [r.asDict() for r in df.collect()]


@pytest.fixture(scope="module")
def generated(spark: SparkSession) -> Iterator[Collected]:
    """One data set for the module, cached: the tests look at it from several sides."""
    data = make(spark, 3)
    cached = [data.history, data.late, data.summary, data.latest_summary]
    for df in cached:
        df.cache()
    yield Collected(data, records(data.history), records(data.late))
    for df in cached:
        df.unpersist()


def _winners(rows: list[Record]) -> dict[tuple[int, str], Record]:
    model = ReferenceModel()
    model.deliver(rows)
    return model.winner


def _rows(df: DataFrame) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in df.collect()), key=repr)


def test_same_seed_same_data_other_seed_other_data(spark: SparkSession) -> None:
    def small(seed: int) -> GeneratedData:
        return generate(spark, accounts=40, months=40, end_month="2024-12", seed=seed, late_fraction=0.5)

    def everything(seed: int) -> list[tuple[Any, ...]]:
        data = small(seed)
        return _rows(
            data.history.withColumn("late", F.lit(False)).unionByName(data.late.withColumn("late", F.lit(True)))
        )

    first = everything(3)
    assert first == everything(3)
    assert first != everything(4)


def test_schemas_are_the_table_contracts(generated: Collected) -> None:
    for df in (generated.data.history, generated.data.late):
        assert [(f.name, f.dataType) for f in df.schema] == [(f.name, f.dataType) for f in ACCOUNTS_ALL]
    for df in (generated.data.summary, generated.data.latest_summary):
        assert [(f.name, f.dataType) for f in df.schema] == [(f.name, f.dataType) for f in SUMMARY]


def test_late_records_come_after_every_history_record(generated: Collected) -> None:
    assert generated.late
    assert min(r["base_ts"] for r in generated.late) > max(r["base_ts"] for r in generated.history)
    # ... and all of them within DELIVERY_DAYS after the end month (the CLI's default end month relies on it)
    assert max(r["base_ts"] for r in generated.late) < dt.datetime(2024, 7, 1) + dt.timedelta(days=DELIVERY_DAYS)


def test_history_is_realistic(generated: Collected) -> None:
    """Months 2020-07 … 2024-06, gaps, sentinels, NULLs, negative days past due, tie-breaks, no deletes."""
    history = generated.history
    months = {r["rpt_as_of_mo"] for r in history}
    assert min(months) == "2020-07" and max(months) == "2024-06"
    assert not any(deleted(r["soft_del_cd"]) for r in history)
    assert {None, "", "0"} <= {r["soft_del_cd"] for r in history}
    assert any(r[a] in SENTINELS for r in history for a in AMOUNTS)
    assert any(r[a] is None for r in history for a in AMOUNTS)
    assert any(r["insert_ts"] is None for r in history) and any(r["update_ts"] is None for r in history)
    assert {r["asset_class_cd_4in"] for r in history if r["days_past_due_ct_4in"] == -1} >= {"1", "S", "X", None}
    assert any(30 <= (r["days_past_due_ct_4in"] or 0) <= 200 for r in history)
    versions = Counter((r["cons_acct_key"], r["rpt_as_of_mo"], r["base_ts"]) for r in history)
    assert any(n > 1 for n in versions.values()), "same-base_ts duplicates (tie-breaks)"
    by_account: dict[int, list[int]] = {}
    for r in history:
        by_account.setdefault(r["cons_acct_key"], []).append(month_index(r["rpt_as_of_mo"]))
    assert any(max(ms) - min(ms) + 1 > len(set(ms)) for ms in by_account.values()), "gaps"
    assert len(by_account) == ACCOUNTS


def test_late_batch_has_every_kind_of_late_record(generated: Collected) -> None:
    history, late = _winners(generated.history), generated.late
    latest = {}
    for a, m in history:
        latest[a] = max(latest.get(a, m), m)
    keys = [(r["cons_acct_key"], r["rpt_as_of_mo"]) for r in late]
    kinds = {
        "new months": [k for k in keys if k not in history],
        "corrections": [k for k in keys if k in history],
        "latest month corrections": [(a, m) for a, m in keys if m == latest[a]],
        "months beyond the 36-month reach": [(a, m) for a, m in keys if month_index(m) <= month_index(latest[a]) - 36],
        "deletes": [r for r in late if deleted(r["soft_del_cd"])],
        "sentinels": [r for r in late if any(r[a] in SENTINELS for a in AMOUNTS)],
        "NULLs overwriting values": [
            r
            for r, k in zip(late, keys, strict=True)
            if k in history and any(r[a] is None and history[k][a] is not None for a in AMOUNTS)
        ],
        "second versions": [k for k, n in Counter(keys).items() if n > 1],
    }
    assert {kind: bool(found) for kind, found in kinds.items()} == dict.fromkeys(kinds, True)
    share = len({a for a, _ in keys}) / ACCOUNTS
    assert 0.4 < share < 0.6


def test_summary_is_the_reference_model_of_history(generated: Collected) -> None:
    model = ReferenceModel()
    model.deliver(generated.history)
    model.run()
    assert_summary_equal(rows_by_key(generated.data.summary), model.summary())
    expected_latest = model.latest()
    for latest in (generated.data.latest_summary, latest_of(generated.data.summary)):
        assert {r["cons_acct_key"]: r.asDict(recursive=True) for r in latest.collect()} == expected_latest


def test_arguments_are_checked(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        generate(spark, accounts=1, months=1, end_month="2024-13", seed=1)
    with pytest.raises(ValueError, match="at least 1"):
        generate(spark, accounts=0, months=1, end_month="2024-12", seed=1)


def own_namespace(spark_resource: SparkIceberg, warehouse: Path, namespace: str) -> SparkIceberg:
    """The test session's resource in a namespace of its own, so that other tests' tables are not touched."""
    return SparkIceberg(
        master=spark_resource.master,
        warehouse=str(warehouse),
        namespace=namespace,
        shuffle_partitions=spark_resource.shuffle_partitions,
        driver_memory=spark_resource.driver_memory,
        extra_conf=spark_resource.extra_conf,
    )


def test_write_creates_the_three_tables(spark_resource: SparkIceberg, warehouse: Path) -> None:
    resource = own_namespace(spark_resource, warehouse, "generate_test")
    spark = resource.session
    data = generate(spark, accounts=30, months=40, end_month="2024-12", seed=5)
    for df in (data.history, data.late, data.summary, data.latest_summary):
        df.cache()
    lakehouse = Lakehouse(spark=resource)
    write(data, lakehouse, replace=False)  # creates the missing tables
    write(data, lakehouse)  # replaces them: same content, no duplicates
    expected = {
        "accounts_all": (data.history.unionByName(data.late), ACCOUNTS_ALL),
        "summary": (data.summary, SUMMARY),
        "latest_summary": (data.latest_summary, SUMMARY),
    }
    for name, (df, contract) in expected.items():
        table = spark.table(resource.table(name))
        assert [(f.name, f.dataType) for f in table.schema] == [(f.name, f.dataType) for f in contract]
        assert _rows(table) == _rows(df), name
    partitions = spark.sql(f"SELECT partition FROM {resource.table('summary')}.partitions").count()
    assert partitions == 40


def test_write_uses_the_table_names_of_the_lakehouse(spark_resource: SparkIceberg, warehouse: Path) -> None:
    resource = own_namespace(spark_resource, warehouse, "generate_names_test")
    spark = resource.session
    data = generate(spark, accounts=3, months=2, end_month="2024-12", seed=5, late_fraction=1.0)
    names = {"accounts_all": "my_accounts", "summary": "my_summary", "latest_summary": "my_latest"}
    lakehouse = Lakehouse(
        spark=resource, accounts_table="my_accounts", summary_table="my_summary", latest_table="my_latest"
    )
    write(data, lakehouse)
    tables = {r["tableName"] for r in spark.sql(f"SHOW TABLES IN {resource.catalog}.{resource.namespace}").collect()}
    assert tables == set(names.values())
    expected = {
        "accounts_all": data.history.unionByName(data.late),
        "summary": data.summary,
        "latest_summary": data.latest_summary,
    }
    for table, df in expected.items():
        assert _rows(spark.table(resource.table(names[table]))) == _rows(df), table
    partitioned = {t: "partition" in spark.table(f"{resource.table(n)}.partitions").columns for t, n in names.items()}
    assert partitioned == {"accounts_all": True, "summary": True, "latest_summary": False}  # as CONTRACTS says


def test_older_months_add_history_and_keep_the_late_batch(spark: SparkSession) -> None:
    """The benchmark's second workload: the same batch over a longer history (issue #8)."""

    def small(older: int) -> GeneratedData:
        return generate(
            spark, accounts=40, months=12, end_month="2024-12", seed=5, late_fraction=0.5, older_months=older
        )

    plain, older = small(0), small(6)
    assert _rows(older.late) == _rows(plain.late)
    before = older.history.where("rpt_as_of_mo < '2024-01'")
    first_months = before.groupBy("cons_acct_key").agg(
        F.min("rpt_as_of_mo").alias("m"), F.countDistinct("rpt_as_of_mo").alias("n")
    )
    assert first_months.count() > 0 and {r["m"] for r in first_months.collect()} == {"2023-07"}
    assert {r["n"] for r in first_months.collect()} == {6}  # every older month reported (no gaps out there)
    assert _rows(older.history.where("rpt_as_of_mo >= '2024-01'")) == _rows(plain.history)
