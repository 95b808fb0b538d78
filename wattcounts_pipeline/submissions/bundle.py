"""Inspect a bundle archive: the one check path shared by `wattcounts submit` and ingestion.

Layers run in order and stop at the first that fails, so a report lists the problems worth fixing now:
archive safety, then manifest and table contracts (every reason at once), then cross-file provenance.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.core.validation import ValidationResult, validate_table
from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, MANIFEST, TABLE_FILES, Limits, read_archive
from wattcounts_pipeline.submissions.consistency import consistency_reasons
from wattcounts_pipeline.submissions.manifest import Manifest, parse_manifest
from wattcounts_pipeline.submissions.physics import physics_reasons
from wattcounts_pipeline.submissions.tables import read_table

# What makes two runs the same measurement: blind to run ids, row order, file format and added traces.
FINGERPRINT_COLUMNS = ("model", "input_tokens_total", "output_tokens_total", "energy_j", "duration_s")
PER_KIND = 5  # reasons shown per kind of problem in a report
MAX_SHOWN = 100  # reasons shown in all

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
    def fingerprints(self) -> list[str]:
        """One fingerprint per validated run, in row order (see run_fingerprints)."""
        return run_fingerprints(self.tables["runs"]) if "runs" in self.tables else []

    @property
    def content_sha256(self) -> str:
        """Hash of the runs' measured values, order-independent: the same measurements re-packed, converted
        to CSV, reordered, renamed or padded with power traces hash the same."""
        return hashlib.sha256("\n".join(sorted(self.fingerprints)).encode()).hexdigest()


def run_fingerprints(runs: pd.DataFrame) -> list[str]:
    """Per run, a short hash of what was measured (model, token totals, energy and duration to 6 significant
    digits), so a run cannot be counted twice under a new run id, row position or bundle."""
    texts = [f"{model}|{int(i)}|{int(o)}|{float(e):.6g}|{float(d):.6g}"
             for model, i, o, e, d in runs[list(FINGERPRINT_COLUMNS)].itertuples(index=False)]
    return [hashlib.sha256(t.encode()).hexdigest()[:24] for t in texts]


def _repeated_runs(runs: pd.DataFrame, runs_file: str) -> list[str]:
    prints = pd.Series(run_fingerprints(runs))
    first = prints.groupby(prints).transform(lambda g: g.index[0])
    return [f"{runs_file}: row {row}, field energy_j: same measured values as row {first.iat[row]} "
            "(one run counted twice)" for row in np.flatnonzero((first != prints.index).to_numpy())]


def _kind(reason: str) -> str:
    """A reason with its row and values blanked: the problem, whatever row it hit."""
    text = re.sub(r"row \d+( \(run [^)]*\))?", "row N", reason)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", text)
    return re.sub(r"-?\d+(\.\d+)?(e[+-]?\d+)?", "#", text)


def summarize_reasons(reasons: list[str], per_kind: int = PER_KIND, max_shown: int = MAX_SHOWN) -> list[str]:
    """Reasons grouped by kind, at most `per_kind` of each and `max_shown` in all, with '... and K more' lines:
    a million bad rows make a report of a hundred lines, not a million."""
    groups: dict[str, list[str]] = {}
    for reason in reasons:
        groups.setdefault(_kind(reason), []).append(reason)
    lines: list[str] = []
    shown = accounted = kinds = 0
    for members in groups.values():
        if shown >= max_shown:
            break
        take = members[: min(per_kind, max_shown - shown)]
        lines += take
        if len(members) > len(take):
            lines.append(f"... and {len(members) - len(take)} more like the last")
        shown, accounted, kinds = shown + len(take), accounted + len(members), kinds + 1
    if accounted < len(reasons):
        lines.append(f"... and {len(reasons) - accounted} more of {len(groups) - kinds} other kind(s)")
    return lines


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
        frame, table_reasons = read_table(table, name, members[name], limits)
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
        reasons += physics_reasons(inspection.manifest, inspection.tables, inspection.files)
        reasons += _repeated_runs(inspection.tables["runs"], inspection.files["runs"])
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
