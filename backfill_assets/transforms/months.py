"""`YYYY-MM` month keys as integers, so that windows are arithmetic and not string games."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F


def in_months(keys: Sequence[str]) -> Column:
    """Rows whose `rpt_as_of_mo` is one of `keys` (on a partitioned table: only those partitions are read)."""
    return F.col("rpt_as_of_mo").isin(*keys)


def month_index(month: Column | str) -> Column:
    """`YYYY-MM` -> year*12 + month-1 (consecutive months differ by 1)."""
    m = F.col(month) if isinstance(month, str) else month
    return (F.substring(m, 1, 4).cast("int") * 12 + F.substring(m, 6, 2).cast("int") - 1).cast("int")


def month_key(index: Column | str) -> Column:
    """Inverse of `month_index`."""
    i = F.col(index) if isinstance(index, str) else index
    return F.concat(
        F.lpad(F.floor(i / 12).cast("string"), 4, "0"),
        F.lit("-"),
        F.lpad((i % 12 + 1).cast("string"), 2, "0"),
    )


def add_months(key: str, n: int) -> str:
    """Python twin of month arithmetic on keys, for partition ranges."""
    year, month = int(key[:4]), int(key[5:7])
    i = year * 12 + month - 1 + n
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    """All month keys from `first` to `last`, both included."""
    out, key = [], first
    while key <= last:
        out.append(key)
        key = add_months(key, 1)
    return out
