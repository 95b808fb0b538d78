"""Fingerprint every table the recorded GPU sweeps serve, to prove a storage change reads back bit-for-bit.

Usage:
    python benchmarks/measurements_roundtrip.py --save before.json      # with the old storage / code
    python benchmarks/measurements_roundtrip.py --compare before.json   # after: exit 1 on any difference

For every folder under data/measurements/ (or --root): `done_keys`, and every table of `load_sweep`; for every
recorded configuration id: every table `find_recorded` hands the `measurements` asset (the first folder that
holds it on each machine, as the asset sees them). A table's fingerprint covers its column names and order, dtypes, index,
and each column's values: numeric columns by their raw bytes (float bits, NaN payloads included), the others
by the type and repr of each value (None vs NaN vs a string stay distinct; repr of a float is exact).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from wattcounts_pipeline.measure.store import done_keys, find_recorded, load_sweep

ROOT = Path(__file__).resolve().parents[1] / "data" / "measurements"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(frame: pd.DataFrame) -> dict:
    """Columns, dtypes, index and a hash of each column's values."""
    columns = {}
    for name in frame.columns:
        col = frame[name]
        if col.dtype.kind in "biuf":
            digest = _sha(np.ascontiguousarray(col.to_numpy()).tobytes())
        else:
            digest = _sha("\x1e".join(f"{type(v).__name__}:{v!r}" for v in col.tolist()).encode())
        columns[str(name)] = f"{col.dtype}|{digest}"
    return {"shape": list(frame.shape), "index": repr(frame.index), "columns": columns,
            "order": [str(c) for c in frame.columns]}


def collect(root: Path) -> dict:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    out: dict = {"folders": {}, "recorded": {}}
    keys: set[str] = set()
    for folder in folders:
        done = done_keys(folder)
        keys |= done
        out["folders"][folder.name] = {
            "done_keys": _sha("\n".join(sorted(done)).encode()), "n_done": len(done),
            "tables": {name: fingerprint(frame) for name, frame in load_sweep(folder).items()}}
    for key in sorted(keys):
        found = find_recorded(key, folders)
        assert found is not None, key
        served, tables = found
        where = {"folder": served[0].name} if len(served) == 1 else {"folders": [f.name for f in served]}
        out["recorded"][key] = {**where, "tables": {name: fingerprint(frame) for name, frame in tables.items()}}
    return out


def diff(a: dict, b: dict, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        lines = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                lines.append(f"{path}/{k}: only in {'after' if k not in a else 'before'}")
            else:
                lines += diff(a[k], b[k], f"{path}/{k}")
        return lines
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path)
    group.add_argument("--compare", type=Path)
    args = parser.parse_args()
    t0 = time.perf_counter()
    got = collect(args.root)
    seconds = round(time.perf_counter() - t0, 1)
    summary = _sha(json.dumps(got, sort_keys=True).encode())
    n_tables = sum(len(v["tables"]) for v in got["recorded"].values())
    print(json.dumps({"folders": len(got["folders"]), "configurations": len(got["recorded"]),
                      "tables_compared": n_tables, "fingerprint": summary, "seconds": seconds}))
    if args.save:
        args.save.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return 0
    before = json.loads(args.compare.read_text())
    problems = diff(before, got)
    for line in problems[:50]:
        print(line)
    print("IDENTICAL" if not problems else f"{len(problems)} DIFFERENCES")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
