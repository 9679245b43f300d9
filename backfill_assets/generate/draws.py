"""Deterministic random draws from hashes of (seed, purpose, keys): the same values whatever the partitioning."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def uniform(seed: int, purpose: str, *keys: Column) -> Column:
    """Uniform in [0, 1) from a hash: deterministic for a seed, independent of partitioning."""
    return F.pmod(F.xxhash64(F.lit(seed), F.lit(purpose), *keys), F.lit(1 << 53)) / float(1 << 53)


def int_in(u: Column, low: Column | int, high: Column | int) -> Column:
    """Uniform integer in [low, high] from a uniform `u`."""
    lo = F.lit(low) if isinstance(low, int) else low
    hi = F.lit(high) if isinstance(high, int) else high
    return (lo + F.floor(u * (hi - lo + 1))).cast("int")


def choice(u: Column, options: Sequence[str | int | float | None]) -> Column:
    return F.element_at(F.array(*[F.lit(o) for o in options]), int_in(u, 1, len(options)))


class Draws:
    """The named uniform draws of one record: 16-bit slices of a few 64-bit hash columns.

    One hash per four draws keeps the generated code small enough for the JIT (a hash per draw
    made the projection too long to be JIT-compiled, and generation several times slower).
    """

    PER_HASH = 4

    def __init__(self, seed: int, salt: str, names: Sequence[str], *keys: Column) -> None:
        self.salt = salt
        count = -(-len(names) // self.PER_HASH)
        self.hashes = [F.xxhash64(F.lit(seed), F.lit(salt), F.lit(i), *keys).alias(self._hash(i)) for i in range(count)]
        self.index = {name: i for i, name in enumerate(names)}

    def _hash(self, i: int) -> str:
        return f"_h_{self.salt}_{i}"

    def add_to(self, df: DataFrame) -> DataFrame:
        return df.select("*", *self.hashes)

    def __getitem__(self, name: str) -> Column:
        i = self.index[name]
        bits = F.shiftright(F.col(self._hash(i // self.PER_HASH)), 16 * (i % self.PER_HASH)).bitwiseAND(0xFFFF)
        return bits / 65536.0

    def int_in(self, name: str, low: Column | int, high: Column | int) -> Column:
        return int_in(self[name], low, high)

    def choice(self, name: str, options: Sequence[str | int | float | None]) -> Column:
        return choice(self[name], options)
