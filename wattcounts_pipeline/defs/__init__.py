"""Dagster glue: one module per pipeline stage, each a thin layer over plain library code."""
