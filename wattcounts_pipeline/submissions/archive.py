"""Read a bundle archive (.tar.gz or .zip) into memory, member by member, under hard limits.

Nothing is ever extracted to disk: a bundle comes from a stranger, so every name, type and size is checked
before its bytes are read, and decompression stops the moment a budget is spent (archive bombs, path
traversal, links and devices all end here as a `SubmissionError` naming the member).
"""

from __future__ import annotations

import gzip
import io
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass

from wattcounts_pipeline.core.errors import SubmissionError

MB = 1024 * 1024
MANIFEST = "manifest.yaml"
TABLE_FILES = {
    "runs": ("runs.parquet", "runs.csv"),
    "requests": ("requests.parquet", "requests.csv"),
    "power_traces": ("power_traces.parquet", "power_traces.csv"),
}
REQUIRED_TABLES = ("runs", "requests")
ALLOWED_MEMBERS = frozenset({MANIFEST, *(n for names in TABLE_FILES.values() for n in names)})


@dataclass(frozen=True)
class Limits:
    """What a bundle may cost us; generous for real measurements, small enough to keep a 2-core box safe."""

    max_compressed_bytes: int = 100 * MB
    max_uncompressed_bytes: int = 200 * MB
    max_members: int = 16
    max_ratio: float = 100.0  # decompressed / compressed, checked once past ratio_floor_bytes
    ratio_floor_bytes: int = 1 * MB  # tiny archives compress tar padding very well; ignore their ratio
    max_manifest_bytes: int = 1 * MB
    # Per table, checked before decoding: parquet's dictionary and run-length encodings let a few KB stand for
    # gigabytes, so encoded sizes alone say nothing about what reading costs.
    max_rows: int = 1_000_000
    max_cells: int = 10_000_000  # rows x columns: bounds the per-cell cost of numbers and pandas objects
    max_decoded_bytes: int = 256 * MB  # the table's strings as they would be once decoded
    max_string_chars: int = 10_000  # one cell


DEFAULT_LIMITS = Limits()


def read_archive(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """The bundle's files by name (a single top-level folder stripped); raises SubmissionError if unsafe."""
    if len(data) > limits.max_compressed_bytes:
        raise SubmissionError(f"archive: compressed size {len(data)} bytes exceeds the limit of "
                              f"{limits.max_compressed_bytes} bytes")
    budget = min(limits.max_uncompressed_bytes, max(limits.ratio_floor_bytes, int(limits.max_ratio * len(data))))
    if data[:2] == b"\x1f\x8b":
        members = _read_targz(data, budget, limits)
    elif data[:4] == b"PK\x03\x04":
        members = _read_zip(data, budget, limits)
    else:
        raise SubmissionError("archive: not a .tar.gz or .zip archive (unrecognised leading bytes)")
    return _check_layout(members)


def _budget_error(budget: int, limits: Limits) -> SubmissionError:
    if budget < limits.max_uncompressed_bytes:
        return SubmissionError(f"archive: archive bomb: expands more than {limits.max_ratio:g}x its compressed "
                               f"size (stopped at {budget} bytes)")
    return SubmissionError(f"archive: uncompressed size exceeds the limit of {limits.max_uncompressed_bytes} bytes")


class _BudgetReader(io.RawIOBase):
    """A read-only stream that refuses to hand out more than `budget` decompressed bytes."""

    def __init__(self, inner: io.BufferedIOBase, budget: int, limits: Limits) -> None:
        self.inner, self.left, self.budget, self.limits = inner, budget, budget, limits

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self.inner.read(min(len(buffer), self.left + 1))
        if len(chunk) > self.left:
            raise _budget_error(self.budget, self.limits)
        self.left -= len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _read_targz(data: bytes, budget: int, limits: Limits) -> dict[str, bytes]:
    stream = io.BufferedReader(_BudgetReader(gzip.GzipFile(fileobj=io.BytesIO(data)), budget, limits))
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # stream mode: one pass, nothing seeks back
            for count, member in enumerate(tar, start=1):
                if count > limits.max_members:
                    raise SubmissionError(f"archive: more than {limits.max_members} members")
                name = _safe_name(member.name)
                if member.isdir():
                    members.setdefault(name + "/", b"")
                    continue
                _check_tar_type(member, name)
                if name in members:
                    raise SubmissionError(f"archive: duplicate member {name!r}")
                if member.size > budget:
                    raise _budget_error(budget, limits)
                handle = tar.extractfile(member)
                members[name] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise SubmissionError(f"archive: corrupt or truncated .tar.gz ({type(exc).__name__}: {exc})") from None
    return members


def _check_tar_type(member: tarfile.TarInfo, name: str) -> None:
    if member.issym():
        raise SubmissionError(f"archive: member {name!r} is a symlink (to {member.linkname!r}); links are refused")
    if member.islnk():
        raise SubmissionError(f"archive: member {name!r} is a hard link (to {member.linkname!r}); links are refused")
    if member.ischr() or member.isblk() or member.isfifo():
        raise SubmissionError(f"archive: member {name!r} is a device or FIFO; only regular files are allowed")
    if not member.isreg() or member.issparse():
        raise SubmissionError(f"archive: member {name!r} is not a regular file (tar type {member.type!r})")


def _read_zip(data: bytes, budget: int, limits: Limits) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise SubmissionError(f"archive: more than {limits.max_members} members ({len(infos)})")
            if sum(i.file_size for i in infos) > budget:
                raise _budget_error(budget, limits)
            left = budget
            for info in infos:
                name = _safe_name(info.filename)
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer stored no file type
                if info.is_dir():
                    members.setdefault(name + "/", b"")
                    continue
                if kind == stat.S_IFLNK:
                    raise SubmissionError(f"archive: member {name!r} is a symlink; links are refused")
                if kind not in (0, stat.S_IFREG):
                    raise SubmissionError(f"archive: member {name!r} is a device or FIFO; only regular files "
                                          "are allowed")
                if info.flag_bits & 0x1:
                    raise SubmissionError(f"archive: member {name!r} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise SubmissionError(f"archive: member {name!r} uses compression method {info.compress_type}; "
                                          "only stored or deflated are allowed")
                if name in members:
                    raise SubmissionError(f"archive: duplicate member {name!r}")
                with zf.open(info) as handle:
                    content = handle.read(min(info.file_size, left) + 1)
                if len(content) > info.file_size:
                    raise SubmissionError(f"archive: member {name!r} is larger than its header declares")
                left -= len(content)
                members[name] = content
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise SubmissionError(f"archive: corrupt .zip ({type(exc).__name__}: {exc})") from None
    return members


def _safe_name(raw: str) -> str:
    """The member name made relative, or an error for anything that could land outside the bundle."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise SubmissionError(f"archive: member name {raw!r} is not UTF-8") from None
    if "\x00" in raw or any(ord(ch) < 32 for ch in raw):
        raise SubmissionError(f"archive: member name {raw!r} holds control characters")
    if "\\" in raw:
        raise SubmissionError(f"archive: member name {raw!r} holds a backslash (Windows path)")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise SubmissionError(f"archive: member {raw!r} has an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SubmissionError(f"archive: member {raw!r} attempts path traversal ('..')")
    return "/".join(parts) or "."


def _check_layout(members: dict[str, bytes]) -> dict[str, bytes]:
    """Flat files from ALLOWED_MEMBERS, optionally all inside one top-level folder (a zipped folder)."""
    dirs = {n.rstrip("/") for n in members if n.endswith("/")} - {"."}
    files = {n: b for n, b in members.items() if not n.endswith("/")}
    tops = {n.split("/", 1)[0] for n in files if "/" in n}
    if len(tops) == 1 and all("/" in n for n in files) and dirs <= tops:
        prefix = tops.pop() + "/"
        files = {n[len(prefix):]: b for n, b in files.items()}
        dirs = set()
    for name in sorted(dirs | {n for n in files if "/" in n}):
        raise SubmissionError(f"archive: unexpected nested path {name!r}; put the bundle's files at the top level")
    unknown = sorted(set(files) - ALLOWED_MEMBERS)
    if unknown:
        raise SubmissionError(f"archive: unknown file(s) {unknown}; a bundle holds only {sorted(ALLOWED_MEMBERS)}")
    if MANIFEST not in files:
        raise SubmissionError(f"archive: missing {MANIFEST}")
    for table, names in TABLE_FILES.items():
        present = [n for n in names if n in files]
        if len(present) > 1:
            raise SubmissionError(f"archive: both {present[0]} and {present[1]}; give table {table} once")
        if not present and table in REQUIRED_TABLES:
            raise SubmissionError(f"archive: missing {' or '.join(names)}")
    return files
