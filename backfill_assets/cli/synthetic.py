"""`generate`: replace the three tables with a synthetic data set ending at the last fully delivered month."""

from __future__ import annotations

import datetime as dt

from backfill_assets.cli.context import TABLES, Context
from backfill_assets.cli.errors import EXIT_REFUSED, CliError
from backfill_assets.generate import DELIVERY_DAYS, generate, write
from backfill_assets.resources.runlog import recover
from backfill_assets.transforms.months import add_months


def delivered_month(today: dt.date | None = None) -> str:
    """The default end month of `generate`: the last month whose generated deliveries (history and
    late batch, up to DELIVERY_DAYS after it ends) all lie in the past, so no base_ts is in the future."""
    day = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=DELIVERY_DAYS)
    return add_months(f"{day.year:04d}-{day.month:02d}", -1)


def cmd_generate(ctx: Context, accounts: int, months: int, end_month: str | None, seed: int) -> None:
    """Replace accounts_all, summary and latest_summary with a synthetic data set."""
    end = end_month or delivered_month()
    try:
        data = generate(
            ctx.spark.session,
            accounts=accounts,
            months=months,
            end_month=end,
            seed=seed,
            layout=ctx.lakehouse.layout,
        )
    except ValueError as e:
        raise CliError(f"generate: {e}", EXIT_REFUSED) from e
    recover(ctx.lakehouse)
    ctx.lakehouse.reset_watermark()
    write(data, ctx.lakehouse, replace=True)
    for table in TABLES:
        name = ctx.table_name(table)
        print(f"{name}: {ctx.spark.session.table(name).count()} rows")
