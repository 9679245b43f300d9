"""Dagster resources: the Spark session on an Iceberg catalog, and the lakehouse tables."""
