"""Ingest inbox bundles into an append-only store: accepted bundles immutable, rejected ones with a report.

Layout under `store_dir`:
  accepted/<bundle_id>/  runs.parquet, requests.parquet[, power_traces.parquet], manifest.yaml,
                         provenance.json, the original archive (all read-only)
  rejected/<bundle_id>/  REPORT.md + the original archive
  .incoming-<bundle_id>-<pid>-<random>/  a bundle being written; renamed into place in one step, so a crash
                         never leaves a half-accepted bundle, and removed by the next run once its process is gone
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wattcounts_pipeline import __version__
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.text import terminal_safe
from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, MANIFEST, Limits
from wattcounts_pipeline.submissions.bundle import Inspection, inspect_archive, run_fingerprints, summarize_reasons

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
BUNDLE_ID_HEX = 16
TEMP_PREFIX = ".incoming-"
SUBMISSIONS_COLUMNS = ["bundle_id", "contributor_name", "contributor_handle", "license", "created_at",
                       "accepted_at", "gpu_name", "gpu_count", "cpu_model", "n_runs", "n_requests"]
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


@dataclass(frozen=True)
class IngestResult:
    status: Literal["accepted", "rejected"]
    bundle_id: str
    reasons: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    location: Path | None = None  # the bundle's folder under accepted/ or rejected/


def bundle_id(path: str | Path) -> str:
    """Short sha256 of the archive's bytes: the same bundle always gets the same id (and partition key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:BUNDLE_ID_HEX]


def list_inbox(inbox: str | Path) -> list[Path]:
    """Bundles waiting in `inbox`, oldest first; hidden files (uploads in progress) are skipped."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    found = [p for p in inbox.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(ARCHIVE_SUFFIXES)]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def ingest_bundle(path: str | Path, store_dir: str | Path, limits: Limits = DEFAULT_LIMITS) -> IngestResult:
    """Validate one bundle and move it out of the inbox into accepted/ or rejected/ (never both halves)."""
    path, store = Path(path), Path(store_dir)
    for sub in ("accepted", "rejected"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    clean_stale(store)
    bid = bundle_id(path)
    size = path.stat().st_size
    if size > limits.max_compressed_bytes:
        too_big = f"archive: compressed size {size} bytes exceeds the limit of {limits.max_compressed_bytes} bytes"
        inspection = Inspection(bid, [too_big])
    else:
        inspection = inspect_archive(path.read_bytes(), bid, limits)
    if inspection.ok:
        inspection.reasons += _duplicate_reasons(store, inspection)
    if not inspection.ok:
        return _reject(path, store, inspection)
    return _accept(path, store, inspection)


def _duplicate_reasons(store: Path, inspection: Inspection) -> list[str]:
    """The bundle itself, or any of its runs, accepted before: matched on measured values, not on ids."""
    if (store / "accepted" / inspection.bundle_id).exists():
        return [f"archive: duplicate: bundle {inspection.bundle_id} was already accepted"]
    mine = inspection.fingerprints
    runs_file = inspection.files["runs"]
    for folder, known in accepted_fingerprints(store).items():
        seen = set(known)
        rows = [row for row, fp in enumerate(mine) if fp in seen]
        if len(rows) == len(mine):
            return [f"archive: duplicate: the same measurements were already accepted in bundle {folder}"]
        if rows:
            return [f"{runs_file}: row {row}, field energy_j: the same measured run was already accepted in bundle "
                    f"{folder}" for row in rows]
    return []


def accepted_fingerprints(store_dir: str | Path) -> dict[str, list[str]]:
    """Run fingerprints of every accepted bundle (from provenance, or its runs for bundles stored before)."""
    out = {}
    for provenance in sorted((Path(store_dir) / "accepted").glob("*/provenance.json")):
        doc = json.loads(provenance.read_text(encoding="utf-8"))
        prints = doc.get("run_fingerprints")
        if prints is None:
            prints = run_fingerprints(pq.read_table(provenance.parent / "runs.parquet").to_pandas())
        out[provenance.parent.name] = list(prints)
    return out


def _accept(path: Path, store: Path, inspection: Inspection) -> IngestResult:
    bid = inspection.bundle_id
    tmp = _temp_dir(store, bid)
    target = store / "accepted" / bid
    try:
        write_accepted(tmp, path, inspection)
        os.rename(tmp, target)
    except OSError as exc:  # a concurrent ingestion of the same bundle won the rename
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        inspection.reasons.append(f"archive: duplicate: bundle {bid} was already accepted")
        return _reject(path, store, inspection)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    target.chmod(_READ_ONLY_DIR)
    _fsync_dir(target.parent)
    path.unlink(missing_ok=True)
    logger.info("accepted bundle %s (%s)", bid, inspection.rows)
    return IngestResult("accepted", bid, [], dict(inspection.rows), target)


def write_accepted(folder: Path, archive: Path, inspection: Inspection) -> None:
    """Everything an accepted bundle keeps, written into `folder` and made read-only (not yet in place)."""
    bid = inspection.bundle_id
    tables = _namespaced(inspection.tables, bid)
    for table, frame in tables.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"{table}.parquet")
    (folder / MANIFEST).write_bytes(inspection.members[MANIFEST])
    shutil.copyfile(archive, folder / f"original{_suffix(archive)}")
    text = json.dumps(_provenance(archive, inspection), indent=2, sort_keys=True, allow_nan=False)  # strict JSON
    (folder / "provenance.json").write_text(text, encoding="utf-8")
    for item in folder.iterdir():
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())
        item.chmod(_READ_ONLY_FILE)


def _namespaced(tables: dict[str, pd.DataFrame], bid: str) -> dict[str, pd.DataFrame]:
    """Prefix run ids with the bundle id: two contributors measuring one configuration share run ids."""
    return {table: frame.assign(run_id=bid + "/" + frame["run_id"]) for table, frame in tables.items()}


def _provenance(archive: Path, inspection: Inspection) -> dict:
    doc = inspection.manifest.doc  # type: ignore[union-attr]  # accepted implies a manifest
    contributor = doc["contributor"]
    return {
        "bundle_id": inspection.bundle_id,
        "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "content_sha256": inspection.content_sha256,
        "run_fingerprints": inspection.fingerprints,
        "archive_name": archive.name,
        "accepted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_at": doc["created_at"],
        "contributor": contributor,
        "license": doc["license"],
        "consent": doc["consent"],
        "hardware": doc["hardware"],
        "software": doc["software"],
        "schema_versions": {t: load_contract(t).version for t in ("runs", "requests")},
        "configurations": list(inspection.manifest.specs),  # type: ignore[union-attr]
        "files": inspection.files,
        "rows": inspection.rows,
        "source": f"submission:{inspection.bundle_id}",
        "run_id_prefix": f"{inspection.bundle_id}/",
        "ingested_by": f"wattcounts_pipeline {__version__}",
    }


def _reject(path: Path, store: Path, inspection: Inspection) -> IngestResult:
    bid = inspection.bundle_id
    tmp = _temp_dir(store, bid)
    (tmp / "REPORT.md").write_text(render_report(path.name, inspection), encoding="utf-8")
    target = store / "rejected" / bid
    if target.exists():  # the same bundle rejected again: the newer report wins
        shutil.rmtree(target)
    os.rename(tmp, target)
    shutil.move(path, target / f"original{_suffix(path)}")
    logger.info("rejected bundle %s: %d reason(s)", bid, len(inspection.reasons))
    return IngestResult("rejected", bid, list(inspection.reasons), dict(inspection.rows), target)


def render_report(archive_name: str, inspection: Inspection) -> str:
    """A human-readable rejection: one reason per line, each naming file, row and field."""
    reasons = inspection.reasons
    intro = (f"Archive {terminal_safe(archive_name)!r} was not accepted: {len(reasons)} problem(s), at most "
             "5 of each kind shown. Rows are 0-based data rows (CSV line = row + 2). Fix them and submit again; "
             "see wattcounts_pipeline/submissions/FORMAT.md.")
    lines = [f"# Bundle {inspection.bundle_id} rejected", "", intro, ""]
    lines += [f"- {terminal_safe(reason)}" for reason in summarize_reasons(reasons)]
    return "\n".join(lines) + "\n"


def accepted_tables(store_dir: str | Path) -> dict[str, pd.DataFrame]:
    """All accepted bundles' tables, concatenated (runs, requests, power_traces) plus one `submissions` row each."""
    accepted = Path(store_dir) / "accepted"
    folders = sorted(p for p in accepted.iterdir() if p.is_dir()) if accepted.is_dir() else []
    out: dict[str, pd.DataFrame] = {}
    for table in ("runs", "requests", "power_traces"):
        frames = [pq.read_table(f / f"{table}.parquet").to_pandas() for f in folders
                  if (f / f"{table}.parquet").exists()]
        empty = load_contract(table).empty_frame()
        out[table] = pd.concat(frames, ignore_index=True) if frames else empty
    out["submissions"] = pd.DataFrame([_submission_row(f) for f in folders], columns=SUBMISSIONS_COLUMNS)
    return out


def _submission_row(folder: Path) -> dict:
    """Attribution for the release (contact details stay in provenance.json, never published)."""
    p = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    return {"bundle_id": p["bundle_id"], "contributor_name": p["contributor"]["name"],
            "contributor_handle": p["contributor"]["handle"], "license": p["license"],
            "created_at": p["created_at"], "accepted_at": p["accepted_at"],
            "gpu_name": p["hardware"].get("gpu_name"), "gpu_count": p["hardware"]["gpu_count"],
            "cpu_model": p["hardware"]["cpu_model"], "n_runs": p["rows"].get("runs", 0),
            "n_requests": p["rows"].get("requests", 0)}


def clean_stale(store_dir: str | Path) -> list[Path]:
    """Remove temp folders left by ingestions that died (their process is gone); returns what was removed."""
    removed = []
    for tmp in Path(store_dir).glob(TEMP_PREFIX + "*"):
        match = re.match(re.escape(TEMP_PREFIX) + r"[0-9a-f]+-(\d+)-", tmp.name)
        if match and _alive(int(match.group(1))):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        logger.warning("removed %s left by an interrupted ingestion", tmp)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_dir(store: Path, bid: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{bid}-{os.getpid()}-", dir=store))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if name.endswith(s)), ".bin")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
