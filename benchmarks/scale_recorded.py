"""Scale test: 1,000 to 10,000 recorded configurations through validate → aggregate → release → predictor.

Usage: python benchmarks/scale_recorded.py [--sizes 1000 3000 10000] [--no-record] [--note TEXT]
Goal (issue 22): 10,000 configurations released and the predictor trained in ≤ 15 minutes and ≤ 8 GiB,
growing close to linearly from 1,000.

The configurations are SYNTHETIC, made from the real recorded ones: every configuration under
`data/measurements/` is copied as many times as needed, with ids `synthetic-k<copy>-<real id>`,
`source` "synthetic:scale-test", experiment "synthetic-scale" and its energies and powers (runs, requests,
power traces alike) scaled by one factor per copy (0.8–1.0, so power stays under the card's limit), as
stored sweep folders of packed parquet in a temporary directory. They are never published: the release and
the predictor are written into that directory and removed with it.

Each size runs in its own process (so peak memory is that size's) through `recorded_release.release_from_folders`
(the path the `measurements` and `validated_measurements` assets take) and `model.registry.train`.
Figures go to `benchmarks/results/scale_recorded.json` with the commit and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from recorded_release import ROOT, release_from_folders
from validate_1m import commit, machine

from wattcounts_pipeline.measure.store import load_sweep
from wattcounts_pipeline.model.registry import train

RESULT = Path(__file__).parent / "results" / "scale_recorded.json"
SOURCE = "synthetic:scale-test"
ENERGY_RUNS = ("energy_j", "energy_net_j", "idle_power_w", "gpu_energy_j", "cpu_energy_j", "dram_energy_j",
               "mean_power_w", "energy_per_token_j", "energy_per_token_net_j", "energy_per_request_j")


def real_tables() -> dict[str, pd.DataFrame]:
    """Every recorded configuration once (the first folder holding it, as a release takes it)."""
    seen: set[str] = set()
    parts: dict[str, list[pd.DataFrame]] = {"runs": [], "requests": [], "power_traces": []}
    for folder in sorted(p for p in ROOT.iterdir() if p.is_dir()):
        tables = load_sweep(folder)
        fresh = set(tables["runs"]["configuration_id"]) - seen
        seen |= fresh
        for name, frame in tables.items():
            if frame.empty:
                continue
            ids = frame["run_id"].str.rsplit("/", n=1).str[0] if name == "power_traces" else frame["configuration_id"]
            parts[name].append(frame[ids.isin(fresh)])
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


def _scale_by_gpu(cell: object, factor: float) -> object:
    if not isinstance(cell, str) or not cell:
        return cell
    return json.dumps([v * factor for v in json.loads(cell)])


def synthetic_copy(real: dict[str, pd.DataFrame], k: int, factor: float) -> dict[str, pd.DataFrame]:
    """Copy `k` of the real tables: new ids, marked synthetic, energies and powers × `factor`."""
    prefix = f"synthetic-k{k:03d}-"
    runs = real["runs"].copy()
    runs["configuration_id"] = prefix + runs["configuration_id"]
    runs["run_id"] = prefix + runs["run_id"]
    runs["experiment"], runs["source"] = "synthetic-scale", SOURCE
    for column in ENERGY_RUNS:
        runs[column] = runs[column] * factor
    runs["gpu_energy_j_by_gpu"] = runs["gpu_energy_j_by_gpu"].map(lambda c: _scale_by_gpu(c, factor))
    requests = real["requests"].copy()
    requests["configuration_id"] = prefix + requests["configuration_id"]
    requests["run_id"] = prefix + requests["run_id"]
    requests["energy_j"] = requests["energy_j"] * factor
    traces = real["power_traces"].copy()
    traces["run_id"] = prefix + traces["run_id"]
    traces["power_w"] = traces["power_w"] * factor
    return {"runs": runs, "requests": requests, "power_traces": traces}


def write_folders(real: dict[str, pd.DataFrame], n: int, root: Path, seed: int = 0) -> list[Path]:
    """`n` synthetic configurations as sweep folders of packed parquet, one folder per copy."""
    rng = np.random.default_rng(seed)
    per_copy = real["runs"]["configuration_id"].nunique()
    folders = []
    for k in range(-(-n // per_copy)):
        tables = synthetic_copy(real, k, float(rng.uniform(0.8, 1.0)))
        keep = tables["runs"]["configuration_id"].drop_duplicates().iloc[: n - k * per_copy]
        folder = root / f"synthetic-{k:03d}"
        folder.mkdir(parents=True)
        for name, frame in tables.items():
            ids = frame["run_id"].str.rsplit("/", n=1).str[0] if name == "power_traces" else frame["configuration_id"]
            frame = frame[ids.isin(set(keep))].reset_index(drop=True)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"{name}.parquet",
                           compression="zstd", compression_level=3, use_dictionary=True)
        folders.append(folder)
    return folders


def one_size(n: int) -> dict[str, object]:
    """Generate, release and train at size `n`; stage seconds, counts and this process's peak memory."""
    with tempfile.TemporaryDirectory(prefix="wattcounts-scale-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        folders = write_folders(real_tables(), n, root / "measurements")
        generate_s = time.perf_counter() - t
        t0 = time.perf_counter()
        folder, stats = release_from_folders(folders, root / "releases")
        configs = pd.read_parquet(folder / "data" / "configurations.parquet")
        if not configs["source"].eq(SOURCE).all():
            raise SystemExit("a non-synthetic row reached the scale-test release")
        t = time.perf_counter()
        train(configs, "v0.0.1", root / "predictor")
        train_s = time.perf_counter() - t
        total_s = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
    return {"configurations_requested": n, **stats, "generate_s": round(generate_s, 2),
            "train_s": round(train_s, 2), "release_and_predictor_s": round(total_s, 2),
            "peak_rss_gib": round(peak_gib, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process of one size
    parser.add_argument("--no-record", action="store_true", help=f"do not write {RESULT.name}")
    parser.add_argument("--note", default="", help="recorded with the figures (e.g. whether the machine was shared)")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_size(args.one)), flush=True)
        return
    host = machine()
    figures = []
    for n in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise SystemExit(f"size {n} failed:\n{done.stderr[-4000:]}")
        figures.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(figures[-1]), flush=True)
    base = figures[0]
    growth = [{"configurations": f["configurations"],
               "time_ratio": round(f["release_and_predictor_s"] / base["release_and_predictor_s"], 2),
               "size_ratio": round(f["configurations"] / base["configurations"], 2)} for f in figures]
    print(json.dumps({"growth": growth}))
    if args.no_record:
        return
    record = {"benchmark": "benchmarks/scale_recorded.py",
              "goal": "10,000 recorded configurations: release + predictor <= 15 min, <= 8 GiB, close to linear",
              "path": "in-process library path of the assets (recorded_release.release_from_folders, model.registry.train)",
              "data": f"synthetic copies of the real recorded configurations, source {SOURCE!r}, never published",
              "commit": commit(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": host, "sizes": figures, "growth": growth, **({"note": args.note} if args.note else {})}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"recorded in {RESULT}")


if __name__ == "__main__":
    main()
