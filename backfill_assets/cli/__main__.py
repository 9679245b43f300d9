"""`python -m backfill_assets.cli`, as the `backfill-assets` console script."""

import sys

from backfill_assets.cli import main

sys.exit(main())
