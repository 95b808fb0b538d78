"""Build a release from the recorded GPU sweeps alone and print its checksums: the release-level half of the
bit-for-bit check of a storage change (`measurements_roundtrip.py` is the table-level half).

Usage:  python benchmarks/recorded_release.py OUT_DIR [--quality] > checksums.txt
`--quality` adds what `release_tables` adds for these rows: published and derived quality (quality/derive.py;
random weights, so nothing measured), joined into the configurations as the pipeline joins it.
Every configuration recorded under data/measurements/ goes the way the default pipeline takes it: the rows
`find_recorded` serves the `measurements` asset, `validate_partitions` for runs and requests (as
`validated_measurements`), `collect_tables`'s concatenation, `aggregate` and `build_release`, without the
CPU partitions (measured live, never the same twice), quality scores or submissions. Run it with the code
and data before a change and after; identical output means the release tables are byte-identical.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.validation import validate_partitions
from wattcounts_pipeline.hub.release import build_release
from wattcounts_pipeline.measure.store import done_keys, find_recorded
from wattcounts_pipeline.quality.derive import release_quality

ROOT = Path("data") / "measurements"


def release_from_folders(folders: list[Path], out: Path, version: str = "0.0.1", quality: bool = False,
                         previous: Path | None = None) -> tuple[Path, dict[str, object]]:
    """The release of every configuration recorded in `folders`, the way the pipeline builds it, and the
    seconds of each stage (`index`: which keys exist; `serve`: `find_recorded` per key, as the `measurements`
    asset does per partition; `validate`: `validate_partitions` over all keys; `aggregate`;
    `release`) with the row counts. `previous`: the release this one follows (its changelog says what changed)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    keys = sorted(set().union(*(done_keys(f) for f in folders)))
    timings["index_s"] = time.perf_counter() - t
    t = time.perf_counter()
    served = {key: find_recorded(key, folders)[1] for key in keys}
    timings["serve_s"] = time.perf_counter() - t
    t = time.perf_counter()
    parts: dict[str, list[pd.DataFrame]] = {"power_traces": [served[k]["power_traces"] for k in keys]}
    quarantined = 0
    for name in ("runs", "requests"):  # as `validated_measurements` does for the partitions of a run
        results = validate_partitions(name, {k: served[k][name] for k in keys},
                                      {k: f"measurements[{k}].{name}" for k in keys})
        quarantined += sum(len(r.quarantine) for r in results.values())
        parts[name] = [r.valid for r in results.values()]
    timings["validate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    tables = {name: pd.concat([p for p in frames if not p.empty], ignore_index=True) for name, frames in parts.items()}
    tables["quality"] = load_contract("quality").empty_frame()
    if quality:
        tables["quality"] = release_quality(tables["quality"], tables["runs"])
    tables["configurations"] = aggregate(tables["runs"], tables["requests"], tables["quality"])
    timings["aggregate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    folder = build_release(tables, version, out, previous=previous)
    timings["release_s"] = time.perf_counter() - t
    stats: dict[str, object] = {"configurations": len(tables["configurations"]), "quarantined_rows": quarantined,
                                **{f"{n}_rows": len(f) for n, f in tables.items()},
                                **{k: round(v, 2) for k, v in timings.items()}}
    return folder, stats


def main() -> int:
    folders = sorted(p for p in ROOT.iterdir() if p.is_dir())
    folder, stats = release_from_folders(folders, Path(sys.argv[1]), quality="--quality" in sys.argv[2:])
    print(f"# {stats['configurations']} configurations, quarantined rows {stats['quarantined_rows']}, "
          + ", ".join(f"{n} {stats[f'{n}_rows']}" for n in ("runs", "requests", "power_traces", "quality",
                                                             "configurations")))
    print((folder / "checksums.sha256").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
