"""Expected failures of a command as one line: `CliError`, exit statuses, and the one line of a Spark error."""

from __future__ import annotations

import re

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException

PROG = "backfill-assets"
EXIT_FAILURE, EXIT_REFUSED = 1, 2


class CliError(Exception):
    """An expected failure: reported as one line on stderr with exit status `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def first_line(error: BaseException) -> str:
    """The first line of an error's message; of a Spark error, its innermost cause's (py4j's only names a call)."""
    if isinstance(error, Py4JJavaError):
        java = error.java_exception
        while java.getCause() is not None:
            java = java.getCause()
        text = str(java.toString()).strip()
    else:
        while isinstance(error, CapturedException) and error.cause is not None:
            error = error.cause
        text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def spark_failure(command: str, error: Exception) -> str:
    """One line for an error of Spark or Iceberg: its cause, the table it concerns, and what to do."""
    cause = first_line(error)
    table = re.search(r"(\S*)/([^/\s]+)/([^/\s]+)/(?:metadata|data)/", cause)
    where = f" on table {table[2]}.{table[3]}" if table else ""
    if table and re.search(r"NotFound|No such file|does not exist", cause):
        hint = (
            "a file the table's Iceberg metadata names is missing. Iceberg keeps absolute paths, so a warehouse"
            f" that was copied or moved still points at {table[1]}: use the warehouse there (BACKFILL_WAREHOUSE),"
            " or rewrite the copy's paths with Iceberg's rewrite_table_path procedure"
        )
    else:
        hint = "see the Spark log above, or run again with --debug for the stack trace"
    return f"{command} failed{where}: {cause}; {hint}"
