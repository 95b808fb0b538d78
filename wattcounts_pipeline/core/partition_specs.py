"""The resolved spec of every registered partition, kept where every stage and every host reads it.

`wattcounts register` (and the experiment sensor) write one file per partition key under the store root,
`<store>/_partition_specs/<key>.json`, holding the same row a sweep writes to its `specs.jsonl`
(`{"configuration_id": key, "spec": <ExperimentSpec.to_dict() as JSON>}`). Stages read the spec from there, not
from the experiment YAMLs: editing a YAML makes new partitions (a new key) and leaves the old ones readable. One
file per key, never rewritten once present, so hosts registering at once cannot lose each other's specs, and an
object store (no append, no rename) holds it as well as a folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from wattcounts_pipeline import paths
from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec

if TYPE_CHECKING:
    from upath import UPath

FOLDER = "_partition_specs"
_seen: set[str] = set()  # paths this process wrote or found: a sensor re-registering every tick reads nothing twice


def _folder(root: Path | UPath | None) -> Path | UPath:
    return (paths.store_root() if root is None else root) / FOLDER


def spec_row(spec: ExperimentSpec) -> dict[str, str]:
    """The row a sweep's specs.jsonl and this registry both hold for one spec."""
    return {"configuration_id": spec.key, "spec": json.dumps(spec.to_dict(), sort_keys=True, default=str)}


def store_specs(specs: Iterable[ExperimentSpec], root: Path | UPath | None = None) -> list[str]:
    """Write the spec of each key not stored yet; returns the keys written. A stored spec is never replaced:
    its key is the hash of what it measures, so a later spec with that key measures the same thing (only the
    experiment's name and `requires`, which the key leaves out, can differ; the first registration's stay)."""
    folder = _folder(root)
    written = []
    for spec in specs:
        path = folder / f"{spec.key}.json"
        if str(path) in _seen or path.exists():
            _seen.add(str(path))
            continue
        data = json.dumps(spec_row(spec), indent=1) + "\n"
        if isinstance(path, Path):
            with atomic.atomic_file(path) as tmp:
                tmp.write_text(data, encoding="utf-8")
        else:  # an object store writes an object whole or not at all
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(data)
        _seen.add(str(path))
        written.append(spec.key)
    return written


def stored_spec(key: str, root: Path | UPath | None = None) -> ExperimentSpec | None:
    """The registered spec of partition `key`, or None when it was never stored."""
    path = _folder(root) / f"{key}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        row = json.loads(text)
        spec = ExperimentSpec.from_dict(json.loads(row["spec"]))
    except (ValueError, KeyError, TypeError, SpecError) as exc:
        raise SpecError(f"{path}: not a stored partition spec ({type(exc).__name__}: {exc})") from exc
    if spec.key != key or row.get("configuration_id") != key:
        raise SpecError(f"{path}: holds the spec of {spec.key!r}, not of partition {key!r}")
    return spec


def stored_keys(root: Path | UPath | None = None) -> set[str]:
    """Keys of every stored spec."""
    folder = _folder(root)
    return {p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")} \
        if folder.exists() else set()
