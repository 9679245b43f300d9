"""Which records of a batch a run rejects (docs/spec.md §7), and which of those no earlier run reported."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

RECORD_ID, RULE, MESSAGE = "record_id", "rule", "message"
TAGS = (RECORD_ID, RULE, MESSAGE)
# microseconds and the zone spelled out: JSON's default format stops at milliseconds
_CONTENT = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "ignoreNullFields": "false"}


def record_id(columns: Sequence[str]) -> Column:
    """A record's identity: a hash of its whole delivered content.

    A record has no key of its own (a rejected one may lack even the account key), so a re-delivery
    of the same bad record is known by its content, and a corrected one (a later base_ts, any value
    changed) is a new record.
    """
    return F.sha2(F.to_json(F.struct(*columns), _CONTENT), 256)


def tag(records: DataFrame, rules: Sequence[tuple[str, Column, str]], columns: Sequence[str]) -> DataFrame:
    """`records` with their identity (of `columns`), the first of `rules` each breaks and its message.

    `rules` are (name, violated, message) in the order a record is judged; an accepted record has
    NULL rule and message.
    """
    first: Column | None = None
    for name, violated, message in rules:
        reason = F.struct(F.lit(name).alias(RULE), F.lit(message).alias(MESSAGE))
        first = F.when(violated, reason) if first is None else first.when(violated, reason)
    assert first is not None, "no rules to judge records by"
    return records.select(
        "*", record_id(columns).alias(RECORD_ID), first[RULE].alias(RULE), first[MESSAGE].alias(MESSAGE)
    )


def unseen(tagged: DataFrame, rejected_before: DataFrame) -> DataFrame:
    """The tagged records no earlier run rejected, each new reject once.

    An earlier reject stays rejected even if it would pass now (a base_ts that was in the future):
    only a corrected delivery, a new record, is applied. Identical copies of a bad record are one
    record. `rejected_before` (the rejects table: small) is broadcast.
    """
    known = F.broadcast(rejected_before.select(RECORD_ID).distinct())
    fresh = tagged.join(known, RECORD_ID, "left_anti")
    rejected = F.col(RULE).isNotNull()
    return fresh.where(~rejected).unionByName(fresh.where(rejected).dropDuplicates([RECORD_ID]))


def accepted(batch: DataFrame) -> DataFrame:
    """The records of a tagged batch that break no rule, as they were delivered."""
    return batch.where(F.col(RULE).isNull()).drop(*TAGS)


def rejects(batch: DataFrame, run_id: str, columns: Sequence[str]) -> DataFrame:
    """Rows of the rejects table for the rejected records of a tagged batch: run, time, rule, message, record."""
    return batch.where(F.col(RULE).isNotNull()).select(
        F.lit(run_id).alias("run_id"), F.current_timestamp().alias("rejected_at"), RULE, MESSAGE, RECORD_ID, *columns
    )
