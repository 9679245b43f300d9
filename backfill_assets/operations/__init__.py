"""What operators ask of the tables (docs/spec.md §6), free of Dagster and of printing: the run log
(`runs`), a row's origin (`explain`) and a run's changes (`diff`); plain data for `cli/` to print.

`Refused`: the question cannot be answered (no such run or row); the command says why in one line.
"""

from __future__ import annotations


class Refused(Exception):
    """An operator's question about a run or a row that does not exist (or did not commit)."""
