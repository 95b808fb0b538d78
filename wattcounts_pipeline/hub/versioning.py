"""Pick the next release: reuse the latest when its data is unchanged, else bump the patch version."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.hub.release import build_release, version_key, write_parquet

FIRST_VERSION = "v0.1.0"


@dataclass(frozen=True)
class Release:
    tag: str
    path: Path
    new: bool


def latest_release(releases_dir: Path) -> Path | None:
    """The newest built release folder (by semantic version), ignoring staging folders."""
    built = [p for p in releases_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
             and (p / "checksums.sha256").is_file()] if releases_dir.is_dir() else []
    return max(built, key=lambda p: version_key(p.name)) if built else None


def _bump_patch(version: str) -> str:
    major, minor, patch, _, _ = version_key(version)
    return f"v{major}.{minor}.{patch + 1}"


def _same_data(tables: dict[str, pd.DataFrame], release: Path) -> bool:
    """True when every table would be written byte-identical to the release's parquet files."""
    existing = {p.stem for p in (release / "data").glob("*.parquet")}
    if existing != set(tables):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in tables.items():
            contract = load_contract(name)
            out = Path(tmp) / f"{name}.parquet"
            write_parquet(contract.conform(frame), contract, out)
            if out.read_bytes() != (release / "data" / f"{name}.parquet").read_bytes():
                return False
    return True


def next_release(tables: dict[str, pd.DataFrame], releases_dir: Path, version: str | None = None,
                 context: dict | None = None) -> Release:
    """Build the next release of `tables` under `releases_dir`; same data as the latest → the latest."""
    previous = latest_release(releases_dir)
    if previous is not None and version in (None, previous.name) and _same_data(tables, previous):
        return Release(previous.name, previous, new=False)
    tag = version or (_bump_patch(previous.name) if previous else FIRST_VERSION)
    path = build_release(tables, tag, releases_dir, previous=previous, context=context)
    return Release(tag, path, new=True)
