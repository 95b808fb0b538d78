"""Ingest inbox bundles into an append-only store: accepted bundles immutable, rejected ones with a report.

Layout under `store_dir`:
  accepted/<bundle_id>/  runs.parquet, requests.parquet[, power_traces.parquet], manifest.yaml,
                         provenance.json, the original archive (all read-only, the folder too)
  rejected/<bundle_id>/  REPORT.md + the original archive
  .locks/<bundle_id>.lock  the bundle's lock: one ingestion of a bundle at a time, threads and processes alike

A bundle is in one of three states: accepted (accepted/<id> exists; it wins over a rejected/<id> a crash left),
rejected, or not yet seen (its archive still in the inbox). Each state is entered by one rename of a complete
folder written under `.incoming-<id>-*` beside it, and the archive leaves the inbox only after that rename, so
a run killed at any point leaves one of the three; the next run removes the staging and finishes the work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wattcounts_pipeline import __version__
from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.core.text import terminal_safe
from wattcounts_pipeline.core.vocab import MEASURED_TABLES
from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, MANIFEST, Limits
from wattcounts_pipeline.submissions.bundle import Inspection, inspect_archive, run_fingerprints, summarize_reasons

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
BUNDLE_ID_HEX = 16
LOCKS = ".locks"
SUBMISSIONS_COLUMNS = ["bundle_id", "contributor_name", "contributor_handle", "license", "created_at",
                       "accepted_at", "gpu_name", "gpu_count", "cpu_model", "n_runs", "n_requests"]
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
_STAGED = re.compile(re.escape(atomic.STAGING) + rf"([0-9a-f]{{{BUNDLE_ID_HEX}}})-")
State = Literal["accepted", "rejected", "unseen"]


@dataclass(frozen=True)
class IngestResult:
    status: Literal["accepted", "rejected"]
    bundle_id: str
    reasons: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    location: Path | None = None  # the bundle's folder under accepted/ or rejected/
    repeat: bool = False  # accepted by an earlier ingestion (a racer, or a run killed before it emptied the inbox)


def bundle_id(path: str | Path) -> str:
    """Short sha256 of the archive's bytes: the same bundle always gets the same id (and partition key)."""
    with open(path, "rb") as handle:
        return _digest(handle)


def _digest(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
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


def bundle_state(store_dir: str | Path, bid: str) -> State:
    """Where bundle `bid` stands; accepted wins, so a crash between accepting and clearing a report is harmless."""
    store = Path(store_dir)
    if (store / "accepted" / bid).is_dir():
        return "accepted"
    return "rejected" if (store / "rejected" / bid).is_dir() else "unseen"


def ingest_bundle(path: str | Path, store_dir: str | Path, limits: Limits = DEFAULT_LIMITS) -> IngestResult:
    """Validate one bundle and move it out of the inbox into accepted/ or rejected/ (one of them, whole).

    Holds the bundle's lock throughout: of several ingesters racing on one bundle the first accepts it and the
    others return it as a repeat. The archive is read through one open file, so a racer that already removed
    it from the inbox cannot pull it away mid-read.
    """
    path, store = Path(path), Path(store_dir)
    for sub in ("accepted", "rejected"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the `with handle` below
    except FileNotFoundError:
        raise SubmissionError(f"{terminal_safe(path)}: no longer in the inbox (another ingestion took it)") from None
    with handle:
        bid = _digest(handle)
        with atomic.locked(store / LOCKS / f"{bid}.lock"):
            clean_stale(store, own=bid)
            if bundle_state(store, bid) == "accepted":
                return _repeat(path, handle, store, bid)
            size = os.fstat(handle.fileno()).st_size
            if size > limits.max_compressed_bytes:
                too_big = (f"archive: compressed size {size} bytes exceeds the limit of "
                           f"{limits.max_compressed_bytes} bytes")
                inspection = Inspection(bid, [too_big])
            else:
                handle.seek(0)
                inspection = inspect_archive(handle.read(), bid, limits)
            if inspection.ok:
                inspection.reasons += _duplicate_reasons(store, inspection)
            if not inspection.ok:
                return _reject(path, handle, store, inspection)
            return _accept(path, handle, store, inspection)


def _duplicate_reasons(store: Path, inspection: Inspection) -> list[str]:
    """Any of its runs accepted before in another bundle: matched on measured values, not on ids."""
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
    for folder in _accepted_folders(Path(store_dir)):
        provenance = folder / "provenance.json"
        doc = json.loads(provenance.read_text(encoding="utf-8"))
        prints = doc.get("run_fingerprints")
        if prints is None:
            prints = run_fingerprints(pq.read_table(provenance.parent / "runs.parquet").to_pandas())
        out[provenance.parent.name] = list(prints)
    return out


def _accept(path: Path, handle: BinaryIO, store: Path, inspection: Inspection) -> IngestResult:
    """Write the bundle into staging, make it read-only, then rename it into accepted/ in one step."""
    bid = inspection.bundle_id
    tmp = atomic.staging_folder(store / "accepted", bid)  # beside the target: a read-only folder renames there
    target = store / "accepted" / bid
    try:
        write_accepted(tmp, path.name, handle, inspection)
        tmp.chmod(_READ_ONLY_DIR)
        os.rename(tmp, target)  # cannot exist: we hold the bundle's lock and checked its state
    except BaseException:
        atomic.remove_tree(tmp)
        raise
    atomic.fsync_dir(target.parent)
    _settle(path, handle, store, bid)
    logger.info("accepted bundle %s (%s)", bid, inspection.rows)
    return IngestResult("accepted", bid, [], dict(inspection.rows), target)


def _repeat(path: Path, handle: BinaryIO, store: Path, bid: str) -> IngestResult:
    """The bundle was accepted already: finish what that ingestion may not have (inbox, stale report)."""
    _settle(path, handle, store, bid)
    logger.info("bundle %s was already accepted", bid)
    return accepted_result(store, bid)


def accepted_result(store_dir: str | Path, bid: str) -> IngestResult:
    """The result of an earlier accepting ingestion of `bid`, read back from the store."""
    target = Path(store_dir) / "accepted" / bid
    rows = json.loads((target / "provenance.json").read_text(encoding="utf-8"))["rows"]
    return IngestResult("accepted", bid, [], rows, target, repeat=True)


def _settle(path: Path, handle: BinaryIO, store: Path, bid: str) -> None:
    """After accepting: drop a report an earlier rejection left, and take the archive out of the inbox."""
    rejected = store / "rejected" / bid
    if rejected.exists():
        atomic.remove_tree(rejected)
    _remove_from_inbox(path, handle)


def _remove_from_inbox(path: Path, handle: BinaryIO) -> None:
    """Unlink `path` if it is still the file we read (a racer may have removed it, a new upload replaced it)."""
    try:
        same = os.path.samestat(os.stat(path), os.fstat(handle.fileno()))
    except FileNotFoundError:
        return
    if same:
        path.unlink(missing_ok=True)


def write_accepted(folder: Path, archive_name: str, handle: BinaryIO, inspection: Inspection) -> None:
    """Everything an accepted bundle keeps, written into `folder` and made read-only (not yet in place)."""
    bid = inspection.bundle_id
    tables = _namespaced(inspection.tables, bid)
    for table, frame in tables.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"{table}.parquet")
    (folder / MANIFEST).write_bytes(inspection.members[MANIFEST])
    archive_sha256 = _copy_original(handle, folder / f"original{_suffix(archive_name)}")
    doc = _provenance(archive_name, archive_sha256, inspection)
    text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)  # strict JSON
    (folder / "provenance.json").write_text(text, encoding="utf-8")
    for item in folder.iterdir():
        with open(item, "rb") as written:
            os.fsync(written.fileno())
        item.chmod(_READ_ONLY_FILE)


def _copy_original(handle: BinaryIO, target: Path) -> str:
    """Copy the archive as read (not from the inbox path, which a new upload may replace); returns its sha256."""
    digest = hashlib.sha256()
    handle.seek(0)
    with open(target, "wb") as out:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _namespaced(tables: dict[str, pd.DataFrame], bid: str) -> dict[str, pd.DataFrame]:
    """Prefix run ids with the bundle id: two contributors measuring one configuration share run ids."""
    return {table: frame.assign(run_id=bid + "/" + frame["run_id"]) for table, frame in tables.items()}


def _provenance(archive_name: str, archive_sha256: str, inspection: Inspection) -> dict:
    doc = inspection.manifest.doc  # type: ignore[union-attr]  # accepted implies a manifest
    contributor = doc["contributor"]
    return {
        "bundle_id": inspection.bundle_id,
        "archive_sha256": archive_sha256,
        "content_sha256": inspection.content_sha256,
        "run_fingerprints": inspection.fingerprints,
        "archive_name": archive_name,
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


def _reject(path: Path, handle: BinaryIO, store: Path, inspection: Inspection) -> IngestResult:
    """Report and archive copy into staging, renamed into rejected/ (replacing an older verdict whole)."""
    bid = inspection.bundle_id
    tmp = atomic.staging_folder(store / "rejected", bid)
    target = store / "rejected" / bid
    try:
        (tmp / "REPORT.md").write_text(render_report(path.name, inspection), encoding="utf-8")
        _copy_original(handle, tmp / f"original{_suffix(path.name)}")
        atomic.replace_folder(tmp, target)
    except BaseException:
        atomic.remove_tree(tmp)
        raise
    _remove_from_inbox(path, handle)
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


def bundle_tables(store_dir: str | Path, bid: str) -> dict[str, pd.DataFrame]:
    """One accepted bundle's rows (runs, requests, power_traces) and its one `submissions` attribution row: the
    value the `submissions` asset stores, so every host reads contributed rows from the shared asset store."""
    folder = Path(store_dir) / "accepted" / bid
    if not (folder / "provenance.json").is_file():
        raise SubmissionError(f"bundle {bid} is not accepted in {Path(store_dir) / 'accepted'}")
    out = {table: pq.read_table(folder / f"{table}.parquet").to_pandas() if (folder / f"{table}.parquet").exists()
           else load_contract(table).empty_frame() for table in MEASURED_TABLES}
    out["submissions"] = pd.DataFrame([_submission_row(folder)], columns=SUBMISSIONS_COLUMNS)
    return out


def merge_bundles(bundles: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Several bundles' tables, concatenated table by table (an empty table of its contract when none has rows)."""
    out: dict[str, pd.DataFrame] = {}
    for table in MEASURED_TABLES:
        frames = [b[table] for b in bundles if table in b and not b[table].empty]
        out[table] = pd.concat(frames, ignore_index=True) if frames else load_contract(table).empty_frame()
    credits = [b["submissions"] for b in bundles if "submissions" in b and not b["submissions"].empty]
    out["submissions"] = (pd.concat(credits, ignore_index=True) if credits
                          else pd.DataFrame(columns=SUBMISSIONS_COLUMNS))
    return out


def accepted_tables(store_dir: str | Path) -> dict[str, pd.DataFrame]:
    """All accepted bundles' tables, concatenated (runs, requests, power_traces) plus one `submissions` row each."""
    return merge_bundles([bundle_tables(store_dir, f.name) for f in _accepted_folders(Path(store_dir))])


def _submission_row(folder: Path) -> dict:
    """Attribution for the release (contact details stay in provenance.json, never published)."""
    p = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    return {"bundle_id": p["bundle_id"], "contributor_name": p["contributor"]["name"],
            "contributor_handle": p["contributor"]["handle"], "license": p["license"],
            "created_at": p["created_at"], "accepted_at": p["accepted_at"],
            "gpu_name": p["hardware"].get("gpu_name"), "gpu_count": p["hardware"]["gpu_count"],
            "cpu_model": p["hardware"]["cpu_model"], "n_runs": p["rows"].get("runs", 0),
            "n_requests": p["rows"].get("requests", 0)}


def _accepted_folders(store: Path) -> list[Path]:
    """Accepted bundles, without the staging folders beside them."""
    accepted = store / "accepted"
    return sorted(p for p in accepted.iterdir() if p.is_dir() and not p.name.startswith(".")) if accepted.is_dir() else []


def clean_stale(store_dir: str | Path, own: str | None = None) -> list[Path]:
    """Remove staging left by killed ingestions: any whose bundle lock is free (or is `own`, the one we hold).

    The lock, not a process id, says whether a writer is alive: it is released by the kernel when its holder
    dies, and it also tells apart the threads of one process.
    """
    store = Path(store_dir)
    removed = []
    for parent in (store / "accepted", store / "rejected", store):  # the store itself: where 0.x staged
        for tmp in atomic.stale_staging(parent):
            match = _STAGED.match(tmp.name)
            if match and _remove_unless_locked(store, tmp, match.group(1), own):
                logger.warning("removed %s left by an interrupted ingestion", tmp)
                removed.append(tmp)
    return removed


def _remove_unless_locked(store: Path, tmp: Path, bid: str, own: str | None) -> bool:
    if bid == own:
        atomic.remove_tree(tmp)
        return True
    with atomic.locked(store / LOCKS / f"{bid}.lock", wait=False) as free:
        if free:
            atomic.remove_tree(tmp)
        return free


def _suffix(name: str) -> str:
    name = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if name.endswith(s)), ".bin")
