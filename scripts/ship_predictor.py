"""Train the predictor the package ships, so a fresh install can `wattcounts recommend` before any pipeline run.

Usage: .venv/bin/python scripts/ship_predictor.py
It builds the release of every configuration recorded under data/measurements/ the way the pipeline does
(benchmarks/recorded_release.py, with published and derived quality as `release_tables` adds it), trains on its
configurations table without cross-validation (`wattcounts train`'s path) and replaces
wattcounts_pipeline/model/shipped/ with that one predictor (JSON, sha256-checked on load, ~0.3 MB); the serving
sweeps recorded there (`serving_*.jsonl`, validated) go to wattcounts_pipeline/serving/data/recorded_load_points.jsonl,
which `wattcounts recommend` reads beside the user's own curves. Run it again whenever data/measurements/ changes;
the tag says which recorded data it learnt from.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from recorded_release import ROOT, release_from_folders

from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.model.registry import SHIPPED_DIR, train
from wattcounts_pipeline.serving.store import SHIPPED, recorded_load_points


def data_digest(folders: list[Path]) -> str:
    """Short sha256 over every recorded file's name and bytes: the tag changes exactly when the data does."""
    h = hashlib.sha256()
    for path in sorted(p for f in folders for p in f.rglob("*") if p.is_file()):
        h.update(path.relative_to(REPO / ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def main() -> int:
    folders = sorted(p for p in (REPO / ROOT).iterdir() if p.is_dir())
    tag = f"recorded-{data_digest(folders)}"
    with tempfile.TemporaryDirectory() as tmp:
        release, stats = release_from_folders(folders, Path(tmp), quality=True)
        configurations = pd.read_parquet(release / "data" / "configurations.parquet")
        if SHIPPED_DIR.exists():
            shutil.rmtree(SHIPPED_DIR)
        folder = train(configurations, tag, SHIPPED_DIR)
    points = recorded_load_points(folders)
    if points.empty:
        SHIPPED.unlink(missing_ok=True)
    else:
        checked = validate_table("load_points", points, source=str(REPO / ROOT))
        if not checked.ok:
            raise SystemExit("recorded load points break schemas/load_points.yaml: "
                             + "; ".join(checked.quarantine["reason"].head(3)))
        part = SHIPPED.with_suffix(".tmp")
        points.to_json(part, orient="records", lines=True)
        part.replace(SHIPPED)
    print(f"shipped load curves: {points['sweep_id'].nunique() if not points.empty else 0} sweeps, "
          f"{len(points)} load points in {SHIPPED.relative_to(REPO)}")
    print(f"shipped predictor {tag}: {stats['configurations']} recorded configurations, "
          f"{sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.2f} MB in {folder.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
