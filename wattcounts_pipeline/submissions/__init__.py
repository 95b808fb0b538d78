"""Community submissions: bundle format, local checks and packing, and safe ingestion into the store.

Plain library code (no Dagster): `wattcounts_pipeline.defs.submissions` builds the sensor and asset on it.
"""

from __future__ import annotations

from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, Limits
from wattcounts_pipeline.submissions.bundle import Inspection, inspect_archive
from wattcounts_pipeline.submissions.pack import pack_bundle, submit
from wattcounts_pipeline.submissions.store import (
    IngestResult,
    accepted_tables,
    bundle_id,
    bundle_state,
    clean_stale,
    ingest_bundle,
    list_inbox,
)

__all__ = ["DEFAULT_LIMITS", "IngestResult", "Inspection", "Limits", "accepted_tables", "bundle_id",
           "bundle_state", "clean_stale", "ingest_bundle", "inspect_archive", "list_inbox", "pack_bundle", "submit"]
