"""Pack a bundle folder and hand it to the inbox: the contributor's side of a submission.

Packing is deterministic (sorted members, zeroed times and owners), so packing the same folder twice yields
the same bytes and the same bundle id; a resubmission is recognised as a duplicate, not counted twice.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import tarfile
import tempfile
import uuid
import zipfile
from pathlib import Path

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.core.text import terminal_safe
from wattcounts_pipeline.submissions.archive import ALLOWED_MEMBERS, DEFAULT_LIMITS, Limits
from wattcounts_pipeline.submissions.bundle import inspect_archive, summarize_reasons
from wattcounts_pipeline.submissions.store import bundle_id

logger = logging.getLogger(__name__)


def pack_bundle(source_dir: str | Path, out_path: str | Path) -> Path:
    """Write the bundle files of `source_dir` into `out_path` (.zip if it ends so, else .tar.gz)."""
    source, out = Path(source_dir), Path(out_path)
    if not source.is_dir():
        raise SubmissionError(f"{source}: not a folder")
    entries = sorted(source.iterdir())
    unknown = [p.name for p in entries if p.name not in ALLOWED_MEMBERS]
    if unknown:
        raise SubmissionError(f"{source}: unknown file(s) {unknown}; a bundle holds only {sorted(ALLOWED_MEMBERS)}")
    for p in entries:
        if p.is_symlink() or not p.is_file():
            raise SubmissionError(f"{p}: not a regular file")
    if out.name.lower().endswith(".zip"):
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in entries:
                info = zipfile.ZipInfo(p.name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, p.read_bytes())
        return out
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in entries:
            data = p.read_bytes()
            member = tarfile.TarInfo(p.name)
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            tar.addfile(member, io.BytesIO(data))
    return out


def check_bundle(folder: str | Path, limits: Limits = DEFAULT_LIMITS) -> tuple[str, list[str]]:
    """(bundle id, every reason ingestion would reject it) of `folder`, packed as `submit` packs it."""
    with tempfile.TemporaryDirectory(prefix="wattcounts-check-") as tmp:
        archive = pack_bundle(folder, Path(tmp) / "bundle.tar.gz")
        bid = bundle_id(archive)
        return bid, inspect_archive(archive.read_bytes(), bid, limits).reasons


def rejection_message(folder: str | Path, reasons: list[str]) -> str:
    """What `submit` prints for a bundle that would be rejected: grouped, capped, terminal-safe."""
    return (f"{terminal_safe(folder)}: the bundle would be rejected ({len(reasons)} problem(s)):\n"
            + "\n".join(f"  - {terminal_safe(r)}" for r in summarize_reasons(reasons)))


def submit(folder: str | Path, inbox: str | Path | None = None, limits: Limits = DEFAULT_LIMITS) -> tuple[str, Path]:
    """Check `folder` exactly as ingestion will, pack it, and drop it atomically into the inbox.

    Returns (bundle id, path in the inbox); raises SubmissionError listing every reason it would be rejected.
    """
    inbox = Path(inbox) if inbox else paths.subdir("submissions", "inbox")
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f".{uuid.uuid4().hex}.tar.gz.part"  # hidden: list_inbox skips it until renamed
    try:
        pack_bundle(folder, tmp)
        bid = bundle_id(tmp)
        inspection = inspect_archive(tmp.read_bytes(), bid, limits)
        if not inspection.ok:  # grouped and capped: a bomb prints 100 lines, not 10^6
            raise SubmissionError(rejection_message(folder, inspection.reasons))
        final = inbox / f"{bid}.tar.gz"
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("submitted %s as bundle %s", folder, bid)
    return bid, final
