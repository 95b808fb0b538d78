"""Build a versioned dataset release folder: parquet per table, dataset card, figure, schemas, changelog, checksums."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.errors as pa_errors
import pyarrow as pa
import pyarrow.parquet as pq

from wattcounts_pipeline import paths
from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.core.contracts import Contract, load_contract
from wattcounts_pipeline.core.errors import ContractError, ReleaseError
from wattcounts_pipeline.core.vocab import RELEASE_TABLES
from wattcounts_pipeline.hub.card import DEFAULT_CONFIG, render_card
from wattcounts_pipeline.hub.changelog import MANIFEST, changelog_entry, diff_release, read_manifest
from wattcounts_pipeline.hub.figures import energy_per_token_figure, load_curve_figure, quality_energy_figure

logger = logging.getLogger(__name__)

CONFIG_ORDER = RELEASE_TABLES
CHECKSUMS = "checksums.sha256"
BUILD_LOCK = ".build.lock"
ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key of a semantic version (`vX.Y.Z` or `X.Y.Z`, optional pre-release); ReleaseError if malformed."""
    match = _SEMVER.match(version)
    if not match:
        raise ReleaseError(f"release version {version!r} is not semantic (expected vX.Y.Z or X.Y.Z)")
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), 0 if pre else 1, pre or ""


def build_release(tables: dict[str, pd.DataFrame], version: str, out_dir: Path, previous: Path | None = None,
                  context: dict[str, Any] | None = None) -> Path:
    """Write release `version` to `out_dir/<version>/` and return that folder.

    The folder is assembled in a staging sibling and renamed into place, so a crash never leaves a
    half-written release; the next build removes staging a killed one left. Output is deterministic for the
    same inputs (no timestamps unless `context` has them).
    """
    key = version_key(version)
    if DEFAULT_CONFIG not in tables:
        raise ReleaseError(f"a release needs the {DEFAULT_CONFIG!r} table (the dataset's default config)")
    previous_version = None
    if previous is not None:
        previous_version = read_manifest(previous)["version"]
        if key <= version_key(previous_version):
            raise ReleaseError(f"release {version} must be newer than the previous release {previous_version}")
    names = sorted(tables, key=lambda n: (CONFIG_ORDER.index(n) if n in CONFIG_ORDER else len(CONFIG_ORDER), n))
    contracts = {name: _contract(name) for name in names}
    frames = {name: _validated(contracts[name], tables[name]) for name in names}

    target = out_dir / version
    with atomic.locked(out_dir / BUILD_LOCK):  # one build at a time: staging found under the lock is stale
        for stale in atomic.stale_staging(out_dir):
            logger.warning("removing %s left by an interrupted release build", stale)
            atomic.remove_tree(stale)
        staging = atomic.staging_folder(out_dir, version)
        try:
            _write_release(staging, frames, contracts, version, previous, previous_version, dict(context or {}))
            if target.exists():
                logger.info("replacing existing release folder %s", target)
            atomic.replace_folder(staging, target)
        except BaseException:
            atomic.remove_tree(staging)
            raise
    logger.info("built release %s at %s (%s)", version, target,
                ", ".join(f"{n}: {len(f)} rows" for n, f in frames.items()))
    return target


def _contract(name: str) -> Contract:
    try:
        return load_contract(name)
    except ContractError as exc:
        raise ReleaseError(f"table {name!r} has no usable contract: {exc}") from exc


def _validated(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """Conform to the contract and check it, reporting every failure at once: a release never ships bad rows."""
    try:
        conformed = contract.conform(frame)
        return contract.pandera_schema().validate(conformed, lazy=True)
    except ContractError as exc:
        raise ReleaseError(str(exc)) from exc
    except pa_errors.SchemaErrors as exc:
        cases = exc.failure_cases[["column", "check", "failure_case"]].head(10).to_string(index=False)
        raise ReleaseError(f"table {contract.name!r} breaks its contract ({len(exc.failure_cases)} "
                           f"failures):\n{cases}") from exc


def _write_release(folder: Path, frames: dict[str, pd.DataFrame], contracts: dict[str, Contract], version: str,
                   previous: Path | None, previous_version: str | None, context: dict[str, Any]) -> None:
    (folder / "data").mkdir()
    num_bytes = {name: write_parquet(frame, contracts[name], folder / "data" / f"{name}.parquet")
                 for name, frame in frames.items()}
    (folder / "schemas").mkdir()
    for name in frames:
        shutil.copy2(paths.SCHEMAS_DIR / f"{name}.yaml", folder / "schemas" / f"{name}.yaml")
    energy_per_token_figure(frames[DEFAULT_CONFIG], folder / "figures" / "energy_per_token.png")
    quality_energy_figure(frames[DEFAULT_CONFIG], folder / "figures" / "quality_vs_energy.png")
    if "load_points" in frames:  # serving sweeps (wattcounts_pipeline/serving/)
        load_curve_figure(frames["load_points"], folder / "figures" / "load_curves.png")

    diffs = diff_release(previous, frames, contracts) if previous is not None else []
    entry = changelog_entry(version, previous_version, diffs, {n: len(f) for n, f in frames.items()})
    history = (previous / "CHANGELOG.md").read_text(encoding="utf-8").split("\n", 2)[2] if previous else ""
    (folder / "CHANGELOG.md").write_text(f"# Changelog\n\n{entry}\n{history}".rstrip("\n") + "\n", encoding="utf-8")

    manifest = {"version": version, "previous": previous_version,
                "tables": {n: {"rows": len(f), "schema_version": contracts[n].version,
                               "primary_key": list(contracts[n].primary_key)} for n, f in frames.items()}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(render_card(frames, contracts, version, context, num_bytes), encoding="utf-8")
    write_checksums(folder)


def write_parquet(frame: pd.DataFrame, contract: Contract, path: Path) -> int:
    """Parquet with exactly the contract's Arrow types (the card's features), no pandas index or metadata.

    Returns the table's in-memory Arrow size in bytes, counted over one chunk per column: how the frame was
    concatenated (string columns keep their chunks) must not change the card.
    """
    schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.dtype], nullable=True) for c in contract.columns])
    table = (pa.Table.from_pandas(frame, schema=schema, preserve_index=False).replace_schema_metadata(None)
             .combine_chunks())
    pq.write_table(table, path)
    return table.nbytes


def write_checksums(folder: Path) -> Path:
    """`checksums.sha256` (sha256sum format) over every other file in the release."""
    lines = [f"{_sha256(p)}  {p.relative_to(folder).as_posix()}" for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != CHECKSUMS]
    out = folder / CHECKSUMS
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def verify_checksums(folder: Path) -> None:
    """ReleaseError unless the folder holds exactly the files its checksums list, unmodified."""
    listed = folder / CHECKSUMS
    if not listed.is_file():
        raise ReleaseError(f"{folder}: no {CHECKSUMS}; not a release folder")
    expected: dict[str, str] = {}  # "<sha256>  <path>" lines
    for line in listed.read_text(encoding="utf-8").splitlines():
        digest, path = line.split("  ", 1)
        expected[path] = digest
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS}
    if present != set(expected):
        raise ReleaseError(f"{folder}: files differ from {CHECKSUMS}: "
                           f"extra {sorted(present - set(expected))}, missing {sorted(set(expected) - present)}")
    bad = [name for name, digest in expected.items() if _sha256(folder / name) != digest]
    if bad:
        raise ReleaseError(f"{folder}: checksum mismatch for {bad}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
