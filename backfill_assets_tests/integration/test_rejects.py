"""docs/spec.md §7: a record that breaks a rule is rejected and kept once in backfill_rejects; it stops nothing.

One lake for the module: each test delivers into it and runs the real job after the one before.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pyspark.sql import Row, SparkSession

from backfill_assets import cli
from backfill_assets.contracts.models import Bounds, rejections
from backfill_assets.contracts.validation import check_frame
from backfill_assets.definitions import build_defs
from backfill_assets.resources.quality import DataQuality
from backfill_assets.resources.spark import SparkIceberg
from backfill_assets.runner import RunReport, run_pending
from backfill_assets.transforms.rejects import MESSAGE, RULE, accepted, tag, unseen
from backfill_assets_tests.fixtures import ACCOUNTS_ALL, LAYOUT, Lake, account_row, frame, record

MONTHS = ["2024-01", "2024-02", "2024-03"]
FAR_FUTURE = dt.datetime(2099, 1, 1)
SOURCE_CHECK = "classified_accounts:source_records_valid"


@pytest.fixture(scope="module")
def lake(spark: SparkSession, spark_resource: SparkIceberg) -> Iterator[Lake]:
    """Accounts 1 and 2 with three months applied. Share limit off: in a batch this small one bad record
    is far more than 1 % (the limits have a test of their own)."""
    lake = Lake(spark, spark_resource, DataQuality(max_rejected_share=1.0))
    lake.deliver(record(a, m) for a in (1, 2) for m in MONTHS)
    lake.run()
    yield lake


def bad(account: int | None, month: str | None, **values: Any) -> dict[str, Any]:
    """A record with any value, NULL keys and base_ts included (`record` fills those in)."""
    row = record(0, "2024-01")
    row.update(cons_acct_key=account, rpt_as_of_mo=month, **values)
    return row


def rejects(lake: Lake, run_id: str | None = None) -> list[Row]:
    rows = lake.spark.table(lake.table("backfill_rejects"))
    return rows.where(rows.run_id == run_id).collect() if run_id else rows.collect()


def snapshots(lake: Lake) -> dict[str, int | None]:
    return {t: lake.snapshot(t) for t in ("summary", "latest_summary", "backfill_rejects", "backfill_state")}


def rejected(report: RunReport) -> int:
    return int(report.metadata["classified_accounts"]["rejected_records"])


# ------------------------------------------------------------------ the rules and transforms, no run

UTC = dt.UTC
BOUNDS = Bounds(dt.datetime(2024, 5, 1, 1, tzinfo=UTC), "2015-01", "2024-04")  # now: 2024-05-01 00:00 UTC


def test_each_record_is_rejected_under_the_first_rule_it_breaks(spark: SparkSession) -> None:
    at = dt.datetime(2024, 3, 5, tzinfo=UTC)
    rules = {
        1: (None, "2024-01", at),
        2: ("null_key", "2024-01", None),  # NULL key and NULL base_ts: the first rule counts
        3: ("bad_month", None, at),
        4: ("bad_month", "2024-1", at),
        5: ("month_before_partitions", "2014-12", at),
        6: ("month_after_delivery", "2024-04", at),
        7: ("month_after_delivery", "2024-05", dt.datetime(2024, 5, 1, 0, 10, tzinfo=UTC)),  # no partition yet
        8: (None, "2024-04", dt.datetime(2024, 4, 30, 23, 59, tzinfo=UTC)),
        9: ("null_base_ts", "2024-01", None),
        10: ("future_base_ts", "2024-01", dt.datetime(2024, 5, 1, 1, 1, tzinfo=UTC)),
    }
    rows = [account_row(None if a == 2 else a, month, base_ts=ts) for a, (_, month, ts) in rules.items()]
    df = frame(spark, rows, ACCOUNTS_ALL)
    report = check_frame(df, "accounts_all", LAYOUT, BOUNDS)
    assert report.rows_read == 10
    assert report.rejected == {
        "null_key": 1,
        "bad_month": 2,
        "month_before_partitions": 1,
        "month_after_delivery": 2,
        "null_base_ts": 1,
        "future_base_ts": 1,
    }
    tagged = tag(df, rejections(BOUNDS), ACCOUNTS_ALL.fieldNames()).collect()
    assert {r["cons_acct_key"] or 2: r[RULE] for r in tagged} == {a: rule for a, (rule, _, _) in rules.items()}
    month = next(r[MESSAGE] for r in tagged if r["cons_acct_key"] == 7)
    assert month == "accounts_all: column rpt_as_of_mo: must not be after the month of its base_ts" + (
        " (nor after the last partition 2024-04)"
    )


def test_a_rejected_record_is_known_by_its_whole_content(spark: SparkSession) -> None:
    """Identical copies are one record; a microsecond or any value more makes another one."""
    at = dt.datetime(2024, 3, 5, 6, 7, 8, 123456, tzinfo=UTC)
    rows = [
        account_row(None, "2024-01", base_ts=at),
        account_row(None, "2024-01", base_ts=at),
        account_row(None, "2024-01", base_ts=at + dt.timedelta(microseconds=1)),
        account_row(None, "2024-01", base_ts=at, acct_stat_cd="12"),
        account_row(None, "2024-02", base_ts=at),
        account_row(1, "2024-01", base_ts=at),
    ]
    tagged = tag(frame(spark, rows, ACCOUNTS_ALL), rejections(BOUNDS), ACCOUNTS_ALL.fieldNames())
    assert unseen(tagged, tagged.limit(0)).count() == 5  # the copy is gone
    known = tagged.where("rpt_as_of_mo = '2024-02' OR cons_acct_key = 1")
    left = unseen(tagged, known)
    assert left.count() == 3 and left.where(f"{RULE} IS NULL").count() == 0  # a known record stays rejected
    assert accepted(unseen(tagged, known)).columns == ACCOUNTS_ALL.fieldNames()


# ------------------------------------------------------------------ runs of the real job

RULES = [
    "null_key",
    "bad_month",
    "bad_month",
    "bad_month",
    "month_before_partitions",
    "month_after_delivery",
    "null_base_ts",
    "future_base_ts",
    "null_key",
]


def first_bad_batch() -> list[dict[str, Any]]:
    """One record per entry of RULES, made now: later than everything applied so far."""
    return [
        bad(None, "2024-02"),
        bad(11, "2024-13"),
        bad(12, "202402"),
        bad(13, None),
        bad(14, "2014-06"),  # partitions start 2015-01
        bad(15, "2026-09"),  # base_ts in 2026-06 (fixtures.T0)
        bad(16, "2024-02", base_ts=None),
        bad(17, "2024-03", base_ts=FAR_FUTURE),
        bad(None, None, base_ts=None),  # breaks three rules: kept under the first
    ]


@pytest.fixture(scope="module")
def first_bad_run(lake: Lake) -> tuple[list[dict[str, Any]], RunReport]:
    """Valid records and one bad record per rule (one twice), in one run: the batch and the run's report."""
    lake.deliver([record(1, "2024-04"), record(2, "2024-02", acct_bal_am=7), record(3, "2024-03")])
    batch = first_bad_batch()
    lake.deliver(batch, to_model=False)
    lake.deliver([batch[6]], to_model=False)  # an identical copy of a bad record is the same record
    return batch, lake.run()


def test_each_rejected_record_is_kept_once_with_its_rule_and_the_rest_is_applied(
    lake: Lake, first_bad_run: tuple[list[dict[str, Any]], RunReport]
) -> None:
    batch, report = first_bad_run
    lake.assert_matches_model()  # every valid record applied, none of the bad ones

    kept = rejects(lake, report.run_id)
    assert len(kept) == len(RULES) == len({r["record_id"] for r in kept})
    columns = ACCOUNTS_ALL.fieldNames()
    got = sorted(((r["rule"], *(r[c] for c in columns)) for r in kept), key=str)
    assert got == sorted(((rule, *(r[c] for c in columns)) for r, rule in zip(batch, RULES, strict=True)), key=str)
    for r in kept:
        assert r["message"].startswith("accounts_all: column ") and r["rejected_at"] is not None

    check = report.checks[SOURCE_CHECK]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["rejected_records"].value == len(RULES) == rejected(report)
    assert check.metadata["rejected_by_rule"].value == {rule: RULES.count(rule) for rule in RULES}
    assert "(None, None)" in str(check.metadata["problems"].value)  # example keys, NULLs too
    line = next(line for line in report.lines() if line.startswith("rejected records:"))
    assert line.startswith("rejected records: 9 (bad_month 3, future_base_ts 1, month_after_delivery 1,")
    assert f"backfill-assets rejects --run {report.run_id}" in line
    assert any(line.startswith(f"  WARN {SOURCE_CHECK}: accounts_all: column ") for line in report.lines())


# a bad record of the first batch -> the column, the rule and the example key the check names for it
NAMED = {
    "null key": ("cons_acct_key", "must not be NULL", "(None, 2024-02)"),
    "month 13": ("rpt_as_of_mo", "must be a month 'YYYY-MM' with month 01-12", "(11, 2024-13)"),
    "month without dash": ("rpt_as_of_mo", "must be a month 'YYYY-MM'", "(12, 202402)"),
    "null month": ("rpt_as_of_mo", "must not be NULL", "(13, None)"),
    "month before the partitions": ("rpt_as_of_mo", "must not be before the first partition 2015-01", "(14, 2014-06)"),
    "month after its base_ts": ("rpt_as_of_mo", "must not be after the month of its base_ts", "(15, 2026-09)"),
    "null base_ts": ("base_ts", "must not be NULL", "(16, 2024-02)"),
    "future base_ts": ("base_ts", "must not be after", "(17, 2024-03)"),
}


def _table_rows(markdown: str) -> list[list[str]]:
    """The body rows of a markdown table (`checks.md_table`), cell by cell."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()[2:]]


@pytest.mark.parametrize("case", NAMED)
def test_the_warning_names_each_bad_record_with_its_column_rule_and_key(
    first_bad_run: tuple[list[dict[str, Any]], RunReport], case: str
) -> None:
    column, rule, key = NAMED[case]
    check = first_bad_run[1].checks[SOURCE_CHECK]
    rows = _table_rows(check.metadata["problems"].value)  # severity, table, column, rule, rows, months, keys
    named = [r for r in rows if r[:3] == ["WARN", "accounts_all", column] and rule in r[3] and key in r[6]]
    assert named, rows
    description = check.description or ""
    assert description.startswith("accounts_all: column ") and "e.g. cons_acct_key=" in description


def test_a_second_run_reports_nothing_new(lake: Lake) -> None:
    """The rejected records are still newer than the watermark (one has no base_ts at all): the run
    looks at them again, knows them, and neither reports them nor writes anything."""
    before = snapshots(lake)
    report = lake.run()
    assert report.partitions is not None and rejected(report) == 0
    assert report.checks[SOURCE_CHECK].passed
    assert "rejected records: 0" in report.lines()
    assert snapshots(lake) == before


def test_a_run_whose_every_record_is_rejected_records_them_and_succeeds(lake: Lake) -> None:
    before = snapshots(lake)
    lake.deliver([bad(None, "2024-03"), bad(21, "2024-00")], to_model=False)
    report = lake.run()
    assert rejected(report) == 2 and len(rejects(lake, report.run_id)) == 2
    assert report.metadata["summary_backfilled"]["summary_rows_written"] == 0
    after = snapshots(lake)
    assert after["backfill_rejects"] != before["backfill_rejects"]
    assert {t: after[t] for t in ("summary", "latest_summary", "backfill_state")} == {
        t: before[t] for t in ("summary", "latest_summary", "backfill_state")
    }
    outcomes = lake.spark.table(lake.table("backfill_runs")).where(f"run_id = '{report.run_id}'").collect()
    assert {r["event"] for r in outcomes} == {"STARTED", "SUCCEEDED"}


def test_above_a_limit_the_run_fails_and_writes_nothing(lake: Lake) -> None:
    """2 bad records of 3 new ones: above a limit of 1 record, and above a share of half the batch."""
    lake.deliver([record(2, "2024-03", acct_bal_am=5)])
    lake.deliver([bad(None, "2024-01", acct_bal_am=1), bad(31, "2024-02", base_ts=None)], to_model=False)
    before, watermark = snapshots(lake), lake.lakehouse.watermark()
    for limits, named in (
        (DataQuality(max_rejected_records=1, max_rejected_share=1.0), "max_rejected_records 1,"),
        (DataQuality(max_rejected_share=0.5), "max_rejected_share 0.5)"),
    ):
        report = run_pending(build_defs(lake.resource, lake.lakehouse, limits), lake.instance)
        assert not report.success
        for expected in (
            "source_records_valid: accounts_all: column cons_acct_key, base_ts: 2 of 3 new records break a rule",
            named,
            "accounts_all: column cons_acct_key: must not be NULL"
            " (1 row, e.g. cons_acct_key=NULL, rpt_as_of_mo='2024-01')",
        ):
            assert expected in report.error, report.error
        assert report.checks[SOURCE_CHECK].severity.value == "ERROR"
        assert snapshots(lake) == before and lake.lakehouse.watermark() == watermark


def test_within_the_limits_the_same_batch_is_applied(lake: Lake) -> None:
    report = lake.run()
    assert rejected(report) == 2
    lake.assert_matches_model()


def test_a_corrected_delivery_of_a_rejected_record_is_applied(lake: Lake) -> None:
    lake.deliver([record(16, "2024-02"), record(17, "2024-03", acct_bal_am=17), record(11, "2024-12")])
    report = lake.run()
    assert rejected(report) == 0
    lake.assert_matches_model()
    assert {(16, "2024-02"), (17, "2024-03"), (11, "2024-12")} <= set(lake.rows("summary"))


def test_a_far_future_reject_does_not_make_later_records_skipped(lake: Lake) -> None:
    """The watermark comes from applied records only: it stays before the rejected 2099 base_ts."""
    watermark = lake.lakehouse.watermark()
    assert watermark is not None and watermark < FAR_FUTURE
    lake.deliver([record(1, "2024-02", acct_bal_am=2), record(4, "2024-05")])
    assert {"2024-02", "2024-05"} <= set(lake.lakehouse.pending_months(watermark))
    report = lake.run()
    assert report.metadata["summary_backfilled"]["applied_through"] < str(FAR_FUTURE)
    lake.assert_matches_model()


def test_a_failed_run_leaves_no_rejects_and_the_next_one_reports_them(lake: Lake) -> None:
    """A corrupt summary row stops the run after its rejects were recorded: they are rolled back with it."""
    lake.deliver([record(1, "2024-01", acct_bal_am=3)])
    lake.deliver([bad(None, "2024-01", acct_bal_am=41)], to_model=False)
    summary = lake.table("summary")
    clean = lake.snapshot("summary")
    lake.spark.sql(
        f"INSERT INTO {summary} SELECT * FROM {summary} WHERE cons_acct_key = 1 AND rpt_as_of_mo = '2024-02'"
    )
    before = snapshots(lake)
    failed = lake.try_run()
    assert not failed.success and "summary_window_valid" in failed.error, failed.error
    assert rejected(failed) == 1  # it had rejected the record …
    assert snapshots(lake) == before and rejects(lake, failed.run_id) == []  # … and took that back
    lake.lakehouse.rollback({"summary": clean})
    report = lake.run()
    [kept] = rejects(lake, report.run_id)
    assert (kept["rule"], kept["acct_bal_am"]) == ("null_key", 41)
    lake.assert_matches_model()


def test_the_rejects_command(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    def rejects_cli(*argv: str) -> str:
        capsys.readouterr()
        assert cli.main(["rejects", *argv], spark=lake.resource) == 0
        return capsys.readouterr().out

    everything = json.loads(rejects_cli("--json"))
    assert len(everything) == len(rejects(lake)) == len(RULES) + 2 + 2 + 1
    assert {tuple(r) for r in everything} == {("run_id", "rule", "message", "record")}
    future = next(r for r in everything if r["rule"] == "future_base_ts")
    assert future["record"]["cons_acct_key"] == 17 and future["record"]["rpt_as_of_mo"] == "2024-03"
    assert future["record"]["base_ts"] == FAR_FUTURE.astimezone(dt.UTC).isoformat()
    assert future["record"]["insert_ts"] is None
    assert future["message"].startswith("accounts_all: column base_ts: must not be after ")
    assert dt.datetime.fromisoformat(future["record"]["base_ts"]).utcoffset() == dt.timedelta(0)

    run_id = future["run_id"]
    mine = json.loads(rejects_cli("--run", run_id, "--json"))
    assert sorted(r["rule"] for r in mine) == sorted(RULES)
    lines = rejects_cli("--run", run_id).splitlines()
    assert len(lines) == len(RULES) + 1
    assert lines[-1].startswith(f"{len(RULES)} rejected records (bad_month 3, future_base_ts 1, ")
    assert any(
        f"run {run_id}  null_base_ts  cons_acct_key=16, rpt_as_of_mo='2024-02', base_ts=None:" in line for line in lines
    )
    assert rejects_cli("--run", "no-such-run").splitlines() == [
        f"0 rejected records in {lake.table('backfill_rejects')}"
    ]
