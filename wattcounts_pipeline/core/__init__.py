"""Pure-Python core: specs, metrics, statistics, errors. No Dagster import here."""
