"""The layout file (docs/spec.md §8): what it gives the tables, and each wrong entry refused by name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pyspark.sql.types import ArrayType, DateType, DecimalType, IntegerType

from backfill_assets.contracts.layout import DEFAULT_LAYOUT, LayoutError, load_layout, parse_layout

DOCS = Path(__file__).resolve().parents[2] / "docs"
LAYOUTS = DOCS / "layouts"


def default_mapping() -> dict:
    return yaml.safe_load((LAYOUTS / "default.yaml").read_text())


def test_the_default_layout_is_the_shipped_file_and_the_block_in_the_spec() -> None:
    assert load_layout(LAYOUTS / "default.yaml") == DEFAULT_LAYOUT
    block = re.search(r"## 8\..*?```yaml\n(.*?)```", (DOCS / "spec.md").read_text(), re.S)
    assert block is not None
    assert parse_layout(yaml.safe_load(block[1])) == DEFAULT_LAYOUT
    assert parse_layout(DEFAULT_LAYOUT.to_mapping()) == DEFAULT_LAYOUT
    assert len(DEFAULT_LAYOUT.summary_columns) == 20 and DEFAULT_LAYOUT.reach == 35


def test_the_wide_layout_carries_its_columns_and_an_eighth_history() -> None:
    wide = load_layout(LAYOUTS / "wide.yaml")
    summary = {f.name: f.dataType for f in wide.summary}
    assert 40 <= len(summary) <= 50
    assert summary["charge_off_am"] == DecimalType(14, 2) and summary["open_dt"] == DateType()
    assert summary["high_credit_am_history"] == ArrayType(IntegerType())
    assert len(wide.history_sources) == 8
    source = wide.accounts_all.fieldNames()
    assert "acct_open_dt" in source and "open_dt" not in source  # summary names its own, accounts_all the lender's
    assert wide.sentinels["high_credit_am_history"] == (-2147483647, -1)


def test_the_24_month_layout_reaches_23_months() -> None:
    short = load_layout(LAYOUTS / "24-months.yaml")
    assert short.history_length == 24 and short.reach == 23
    assert short.summary == DEFAULT_LAYOUT.summary  # same columns, shorter arrays


def _with(change: dict) -> dict:
    """The default layout's mapping with `change` merged into it (None deletes an entry)."""
    data = default_mapping()
    for path, value in change.items():
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return data


WRONG = {
    "unknown type": ({"scalars.balance_am.type": "integer"}, "scalars.balance_am.type: unknown type 'integer'"),
    "bad decimal": ({"scalars.balance_am.type": "decimal(40,2)"}, "scalars.balance_am.type: unknown type"),
    "history of an unknown scalar": (
        {"histories.balance_am_history": "balance"},
        "histories.balance_am_history: 'balance' is not a scalar",
    ),
    "name used twice": (
        {"histories.balance_am": "balance_am"},
        "histories.balance_am: the name 'balance_am' is used twice",
    ),
    "grid named like a history": (
        {"grid.column": "balance_am_history"},
        "grid.column: the name 'balance_am_history' is used twice",
    ),
    "fixed column listed": (
        {"scalars.base_ts": {"from": "x", "type": "timestamp"}},
        "scalars.base_ts: 'base_ts' is a fixed",
    ),
    "fixed column as source": ({"scalars.balance_am.from": "rpt_as_of_mo"}, "scalars.balance_am.from: 'rpt_as_of_mo'"),
    "N zero": ({"history_length": 0}, "history_length: 0 must be a whole number from 1 to 120"),
    "N above 120": ({"history_length": 121}, "history_length: 121 must be"),
    "N as text": ({"history_length": "36"}, "history_length: '36' must be"),
    "no source": ({"scalars.balance_am.from": None}, "scalars.balance_am: missing 'from'"),
    "unknown entry": ({"scalars.balance_am.default": 0}, "scalars.balance_am: unknown entry 'default'"),
    "unknown top-level entry": ({"arrays": {}}, "layout: unknown entry 'arrays'"),
    "sentinel on a string": ({"scalars.acct_stat_cd.sentinels": ["?"]}, "scalars.acct_stat_cd.sentinels: '?'"),
    "rating of an unknown scalar": (
        {"scalars.payment_rating_cd.rating.days_past_due": "dpd"},
        "scalars.payment_rating_cd.rating.days_past_due: 'dpd' is not a scalar",
    ),
    "grid of a number history": (
        {"grid.history": "balance_am_history"},
        "grid.history: 'balance_am_history' holds int",
    ),
    "grid of no history": ({"grid.history": "rating_history"}, "grid.history: 'rating_history' is not a history"),
    "grid missing two characters": ({"grid.missing": "??"}, "grid.missing: '??' must be one character"),
    "one source, two types": (
        {"scalars.balance_text": {"from": "acct_bal_am", "type": "string"}},
        "scalars.balance_text.from: 'acct_bal_am' is read as int by another scalar",
    ),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_wrong_entry_is_refused_naming_it(case: str) -> None:
    change, message = WRONG[case]
    with pytest.raises(LayoutError) as refused:
        parse_layout(_with(change), "wrong.yaml")
    assert str(refused.value).startswith("wrong.yaml: ")
    assert message in str(refused.value)


def test_a_key_written_twice_in_the_file_is_refused_with_its_line(tmp_path: Path) -> None:
    text = (
        (LAYOUTS / "default.yaml")
        .read_text()
        .replace(
            "  acct_stat_cd:      {from: acct_stat_cd, type: string}\n",
            "  acct_stat_cd:      {from: acct_stat_cd, type: string}\n  balance_am: {from: acct_bal_am, type: int}\n",
        )
    )
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(
        LayoutError, match=rf"layout file {re.escape(str(path))}: 'balance_am' is listed twice \(line 12\)"
    ):
        load_layout(path)


def test_a_missing_file_and_not_yaml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"nowhere\.yaml: cannot be read"):
        load_layout(tmp_path / "nowhere.yaml")
    (tmp_path / "bad.yaml").write_text("scalars: [unclosed\n")
    with pytest.raises(LayoutError, match=r"bad\.yaml: not YAML"):
        load_layout(tmp_path / "bad.yaml")


def test_a_wrong_layout_file_fails_when_the_definitions_load(tmp_path: Path) -> None:
    """What `dagster dev` (and every command) shows: the entry, before any Spark session or table."""
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(_with({"histories.balance_am_history": "balance"})))
    env = {**os.environ, "BACKFILL_LAYOUT": str(path)}
    loaded = subprocess.run(
        [sys.executable, "-c", "import backfill_assets.definitions"], env=env, capture_output=True, text=True
    )
    assert loaded.returncode != 0
    assert f"LayoutError: layout file {path}: histories.balance_am_history: 'balance' is not a scalar" in loaded.stderr
