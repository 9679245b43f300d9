"""The tables of the data contract as a Lakehouse names them: its configured `accounts_table`, `summary_table`
and `latest_table` (the IO manager's intermediate tables keep their contract names)."""

from __future__ import annotations

from backfill_assets.resources.lakehouse import Lakehouse


def configured_names(lakehouse: Lakehouse) -> dict[str, str]:
    """The configured table name of accounts_all, summary and latest_summary (the tables users import and export)."""
    return {
        "accounts_all": lakehouse.accounts_table,
        "summary": lakehouse.summary_table,
        "latest_summary": lakehouse.latest_table,
    }


def qualified_name(lakehouse: Lakehouse, table: str) -> str:
    """Catalog.namespace.name of `table` (accounts_all, summary or latest_summary) as configured on `lakehouse`."""
    return lakehouse.name(configured_names(lakehouse)[table])
