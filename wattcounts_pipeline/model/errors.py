"""Errors of the predictive model, under the project's one hierarchy (WattCountsError)."""

from __future__ import annotations

from wattcounts_pipeline.core.errors import WattCountsError


class ModelError(WattCountsError):
    """The predictor cannot be trained, saved, loaded or applied as asked."""


class CatalogError(ModelError):
    """A hardware or architecture name is not in the catalog; the message lists the known ones."""
