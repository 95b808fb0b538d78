"""Inspect a bundle archive: the one check path shared by `wattcounts submit` and ingestion.

Layers run in order and stop at the first that fails, so a report lists the problems worth fixing now:
archive safety, then manifest and table contracts (every reason at once), then cross-file provenance.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import pandas as pd

from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.core.validation import ValidationResult, validate_table
from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, MANIFEST, TABLE_FILES, Limits, read_archive
from wattcounts_pipeline.submissions.consistency import consistency_reasons
from wattcounts_pipeline.submissions.manifest import Manifest, parse_manifest
from wattcounts_pipeline.submissions.tables import read_table

logger = logging.getLogger(__name__)


@dataclass
class Inspection:
    """What a bundle holds once checked: validated tables (empty when rejected) and every reason found."""

    bundle_id: str
    reasons: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    manifest: Manifest | None = None
    members: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # table -> member it came from

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def content_sha256(self) -> str:
        """Hash of the validated rows alone (not the manifest, file format or `source`), so the same
        measurements re-packed, converted to CSV or sent under another name are caught as a duplicate."""
        digest = hashlib.sha256()
        for table in sorted(self.tables):
            frame = self.tables[table].drop(columns=["source"], errors="ignore")
            digest.update(table.encode())
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()


def inspect_archive(data: bytes, bundle_id: str, limits: Limits = DEFAULT_LIMITS) -> Inspection:
    """Check an archive's bytes; never raises for a bad bundle, the reasons say what is wrong."""
    inspection = Inspection(bundle_id)
    try:
        inspection.members = read_archive(data, limits)
    except SubmissionError as exc:
        logger.debug("bundle %s: unsafe archive: %s", bundle_id, exc)
        inspection.reasons.append(str(exc))
        return inspection
    _inspect_members(inspection, limits)
    logger.debug("bundle %s: %d reason(s), rows %s", bundle_id, len(inspection.reasons), inspection.rows)
    return inspection


def _inspect_members(inspection: Inspection, limits: Limits) -> None:
    members = inspection.members
    inspection.manifest, reasons = parse_manifest(members[MANIFEST], limits.max_manifest_bytes)
    for table, names in TABLE_FILES.items():
        name = next((n for n in names if n in members), None)
        if name is None:
            continue
        inspection.files[table] = name
        frame, table_reasons = read_table(table, name, members[name], limits.max_rows, limits.max_uncompressed_bytes)
        reasons += table_reasons
        if frame is None:
            continue
        inspection.rows[table] = len(frame)
        if table == "runs":
            frame = frame.assign(source=f"submission:{inspection.bundle_id}")
        result = validate_table(table, frame, source=name, contract=load_contract(table))
        reasons += failure_lines(result, name)
        inspection.tables[table] = result.valid
    if not reasons and inspection.manifest is not None:
        reasons += consistency_reasons(inspection.manifest, inspection.tables, inspection.files)
    inspection.reasons = list(dict.fromkeys(reasons))  # a table-level failure repeats per row otherwise
    if inspection.reasons:
        inspection.tables = {}


def failure_lines(result: ValidationResult, filename: str) -> list[str]:
    """One line per failed check, naming the file, row and field (not one line per quarantined row)."""
    lines = []
    for row, column, check, value in result.failures.itertuples(index=False):
        where = f"row {int(row)}, field {column}" if pd.notna(row) else f"column {column}"
        lines.append(f"{filename}: {where}: failed {check} (value {value})")
    return lines
