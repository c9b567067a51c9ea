"""Dagster wiring of the data-quality checks and the anomaly mart."""
