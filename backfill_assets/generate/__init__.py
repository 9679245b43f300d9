"""Realistic synthetic data for demos, tests and benchmarks (docs/spec.md §6 `generate`).

Every value is drawn from hashes of (seed, purpose, account, month, …), so a seed yields the same
data whatever the partitioning, with no Python loop over rows and no driver collect. `history` is
what is already summarised; `late` is the next delivery for some accounts: missing months, corrections
(of the latest month too), NULLs and sentinels overwriting values, deletions, second versions and
months beyond the 36-month reach, all with a `base_ts` greater than every history record's.

`draws`: the hash-based random draws; `records`: accounts, the values of their records and the
history; `late`: the late batch; `dataset`: `generate` and `GeneratedData`; `write`: the Iceberg tables.
"""

from backfill_assets.generate.dataset import GeneratedData, generate
from backfill_assets.generate.late import DELIVERY_DAYS
from backfill_assets.generate.write import write

__all__ = ["DELIVERY_DAYS", "GeneratedData", "generate", "write"]
