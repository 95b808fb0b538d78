"""Sweep results on disk: one folder per sweep under $WATTCOUNTS_HOME/serving/, rows appended as each load point
ends (a sweep that fails later keeps them), failed points beside them with the server's log tail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SpecError

ROWS = "load_points.jsonl"
FAILURES = "failures.jsonl"
SPEC = "spec.json"
RECORDED = "serving_*.jsonl"  # what benchmarks/serving_sweep.py writes, committed under data/measurements/<call>/
SHIPPED = Path(__file__).parent / "data" / "recorded_load_points.jsonl"  # scripts/ship_predictor.py writes it


def sweep_folder(key: str, root: Path | None = None, fresh: bool = False) -> Path:
    """The folder of sweep `key`; `fresh` empties it first (a rerun replaces the sweep's earlier rows)."""
    folder = (root or paths.subdir("serving")) / key
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, flushed, so what was measured survives a crash of what comes after."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        out.flush()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}: line {lineno}: not valid JSON ({exc})") from None
    return records


def read_load_points(source: Path | None = None) -> pd.DataFrame:
    """Load-point rows of a sweep folder, a folder of sweeps (default $WATTCOUNTS_HOME/serving), or one
    `.jsonl`/`.parquet` file; empty when there are none."""
    source = source or paths.subdir("serving")
    if source.is_file():
        if source.suffix == ".parquet":
            return pd.read_parquet(source)
        return pd.DataFrame(_read_jsonl(source))
    if not source.exists():
        raise SpecError(f"{source}: no such load-curve file or folder")
    records = [r for f in sorted(source.rglob(ROWS)) for r in _read_jsonl(f)]
    return pd.DataFrame(records)


def recorded_load_points(folders: list[Path]) -> pd.DataFrame:
    """Load points of sweeps recorded on other hosts (a GPU call's `serving_*.jsonl`, committed under
    data/measurements/<call>/): they stand in for sweeps this host cannot run, as recorded sweep folders do for
    batch rows. A broken line is named by file and line."""
    return pd.DataFrame([r for folder in folders for f in sorted(folder.glob(RECORDED)) for r in _read_jsonl(f)])


def merge_load_points(first: pd.DataFrame, then: pd.DataFrame) -> pd.DataFrame:
    """`first`'s rows, then those of `then` whose sweep `first` lacks on that machine: a sweep measured here
    replaces a recorded or shipped one of the same key and machine whole, never point by point."""
    if then.empty:
        return first
    if first.empty:
        return then.reset_index(drop=True)
    have = set(zip(first["sweep_id"], first["hardware_id"], strict=True))
    keep = [(s, h) not in have for s, h in zip(then["sweep_id"], then["hardware_id"], strict=True)]
    return pd.concat([first, then[keep]], ignore_index=True)


def read_failures(source: Path | None = None) -> list[dict[str, Any]]:
    """Failed load points under a folder (default $WATTCOUNTS_HOME/serving)."""
    source = source or paths.subdir("serving")
    return [r for f in sorted(source.rglob(FAILURES)) for r in _read_jsonl(f)]
