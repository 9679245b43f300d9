"""Independent reference model of docs/spec.md §3–4: a plain-Python full recompute from all records.

Deliberately naive (dicts and loops, no Spark): it is the judge the pipeline is compared with.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

SENTINELS = {-2147483647, -214748364, -21474836, -1}
DEFAULT_LAYOUT_FILE = Path(__file__).resolve().parents[1] / "docs" / "layouts" / "default.yaml"
Record = Mapping[str, Any]
Row = dict[str, Any]


def month_index(m: str) -> int:
    return int(m[:4]) * 12 + int(m[5:7]) - 1


def month_key(i: int) -> str:
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def deleted(code: str | None) -> bool:
    return code in ("1", "4")


def rating(days: int | None, asset_class: str | None) -> str | None:
    if days is None:
        return None
    if days < 0:
        for r, codes in {"S": "1 01 S", "B": "2 02 B", "D": "3 03 D", "L": "4 04 L", "M": "5 05 M"}.items():
            if asset_class in codes.split():
                return r
        return None
    for lower, r in ((180, "6"), (150, "5"), (120, "4"), (90, "3"), (60, "2"), (30, "1")):
        if days >= lower:
            return r
    return "0"


def values(r: Record, layout: Mapping[str, Any]) -> Row:
    """The summary scalars of a record under a layout (docs/spec.md §8, as its YAML file writes it)."""
    out: Row = {"soft_del_cd": r["soft_del_cd"]}
    for name, entry in layout["scalars"].items():
        if "from" in entry:
            v = r[entry["from"]]
            out[name] = None if v in entry.get("sentinels", ()) else v
    for name, entry in layout["scalars"].items():
        if "rating" in entry:
            out[name] = rating(out[entry["rating"]["days_past_due"]], out[entry["rating"]["asset_class"]])
    return out


def _version(r: Record) -> tuple[Any, ...]:
    low = dt.datetime.min
    return (r["base_ts"], r["insert_ts"] or low, r["update_ts"] or low)


class ReferenceModel:
    """Feed it every delivered record and call `run()` whenever the pipeline runs.

    `layout`: the summary layout as its YAML file writes it (default: docs/layouts/default.yaml).
    """

    def __init__(self, layout: Mapping[str, Any] | None = None) -> None:
        self.layout = layout or yaml.safe_load(DEFAULT_LAYOUT_FILE.read_text())
        self.winner: dict[tuple[int, str], Record] = {}
        self.has_row: set[tuple[int, str]] = set()

    def deliver(self, records: Iterable[Record]) -> None:
        for r in records:
            key = (r["cons_acct_key"], r["rpt_as_of_mo"])
            if key not in self.winner or _version(r) > _version(self.winner[key]):
                self.winner[key] = r

    def run(self) -> None:
        """End of a successful run: every month active now has (and keeps) a row."""
        self.has_row |= {k for k, r in self.winner.items() if not deleted(r["soft_del_cd"])}

    def summary(self) -> dict[tuple[int, str], Row]:
        """Expected summary; a deleted row carries only its key and soft_del_cd (the rest is unspecified)."""
        out: dict[tuple[int, str], Row] = {}
        for a, m in self.has_row:
            w = self.winner[(a, m)]
            if deleted(w["soft_del_cd"]):
                out[(a, m)] = {"cons_acct_key": a, "rpt_as_of_mo": m, "soft_del_cd": w["soft_del_cd"]}
                continue
            i0, layout = month_index(m), self.layout
            months = [(a, month_key(i0 - i)) for i in range(layout.get("history_length", 36))]
            active = [
                values(self.winner[k], layout)
                if k in self.winner and not deleted(self.winner[k]["soft_del_cd"])
                else None
                for k in months
            ]
            counted = [
                self.winner[k]["base_ts"]
                for k in months
                if k in self.winner and (not deleted(self.winner[k]["soft_del_cd"]) or k in self.has_row)
            ]
            row: Row = {"cons_acct_key": a, "rpt_as_of_mo": m, "base_ts": max(counted), **values(w, layout)}
            for h, v in layout.get("histories", {}).items():
                row[h] = [None if x is None else x[v] for x in active]
            if grid := layout.get("grid"):
                missing = grid.get("missing", "?")
                row[grid["column"]] = "".join(missing if x is None else x for x in row[grid["history"]])
            out[(a, m)] = row
        return out

    def latest(self) -> dict[int, Row]:
        rows = self.summary()
        best: dict[int, tuple[bool, str]] = {}
        for a, m in rows:
            rank = (not deleted(rows[(a, m)]["soft_del_cd"]), m)
            if a not in best or rank > best[a]:
                best[a] = rank
        return {a: rows[(a, m)] for a, (_, m) in best.items()}
