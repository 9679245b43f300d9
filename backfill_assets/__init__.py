"""backfill_assets: keep a credit bureau's 36-month account summary exact when data arrives late."""
