"""`import` and `export`: a parquet file or folder into a table (validated first), a table out to parquet."""

from __future__ import annotations

from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from backfill_assets.cli.context import Context
from backfill_assets.cli.errors import CliError, first_line
from backfill_assets.contracts.conform import ValidationError, validate_table
from backfill_assets.contracts.validation import Problem, column_mismatches
from backfill_assets.resources.runlog import recover
from backfill_assets.resources.spark import latest_snapshot


def cmd_import(ctx: Context, table: str, parquet: str, replace: bool) -> None:
    """Validate the whole file first; then create the table if needed and write it in one commit."""
    name = ctx.table_name(table)
    session = ctx.spark.session
    try:
        source = session.read.parquet(parquet)
    except AnalysisException as e:
        raise CliError(f"cannot read parquet {parquet}: {first_line(e)}") from e
    layout = ctx.lakehouse.layout
    frame = validate_table(source, table, layout)
    exists, contract = ctx.exists(name), layout.contracts[table]
    if exists and (mismatches := column_mismatches(table, session.table(name).schema, contract.schema)):
        raise ValidationError(mismatches)
    unique = contract.unique
    if exists and unique and not replace:
        existing = session.table(name).select(*unique)
        ex = frame.join(existing, list(unique), "left_semi").select("cons_acct_key", "rpt_as_of_mo").first()
        if ex is not None:
            rule = "key already in the table (appending would duplicate it; use --replace)"
            raise ValidationError([Problem(table, ", ".join(unique), rule, None, (ex[0], ex[1]))])
    recover(ctx.lakehouse)  # a dead run's restore must not land on top of the import
    if table == "summary":
        ctx.lakehouse.reset_watermark()
    session.sql(contract.create_sql(name))
    writer = frame.writeTo(name)
    if replace:
        writer.overwrite(F.lit(True))
    else:
        writer.append()
    snap = latest_snapshot(ctx.spark, name) or {}
    verb = "replaced" if replace else "appended"
    print(f"{name}: {verb} {snap.get('added-records', 0)} rows (snapshot {snap.get('snapshot_id')})")


def cmd_export(ctx: Context, table: str, parquet: str) -> None:
    """Timestamps are written as UTC-adjusted TIMESTAMP_MICROS (not Spark's legacy INT96), so other
    readers (pyarrow, DuckDB, …) get the same instants; the round trip through `import` is exact."""
    name = ctx.table_name(table)
    session = ctx.spark.session
    try:
        df = session.table(name)
    except AnalysisException as e:
        raise CliError(f"table {name} does not exist (nothing to export)") from e
    key = "spark.sql.parquet.outputTimestampType"
    previous = session.conf.get(key, None)
    session.conf.set(key, "TIMESTAMP_MICROS")
    try:
        df.write.mode("overwrite").parquet(parquet)
    finally:
        if previous is None:
            session.conf.unset(key)
        else:
            session.conf.set(key, previous)
    print(f"{name}: exported {session.read.parquet(parquet).count()} rows to {parquet}")
