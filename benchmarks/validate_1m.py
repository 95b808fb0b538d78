"""Validate and aggregate 1,000,000 run rows; the goal is ≤ 3 s on a 2-core machine (issue 22).

Usage: python benchmarks/validate_1m.py [n_rows] [--repeat N] [--no-record]. Rows are synthetic but
physically consistent (10,000 configurations × 100 repetitions); this measures our validation and
aggregation code, not hardware. Each repetition prints one JSON line; at the default size the figures
(best and median of the repetitions), the commit and the machine are written to
`benchmarks/results/validate_1m.json`, so a re-run after a change shows in review.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.core.validation import validate_table


def synthetic_runs(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    configs = n // 100
    cfg = np.repeat(np.arange(configs), n // configs)
    rep = np.tile(np.arange(n // configs), configs)
    duration_s = rng.uniform(10, 60, n)
    out_tokens = rng.integers(1_000, 50_000, n)
    power_w = rng.uniform(150, 650, n)
    energy_j = power_w * duration_s
    idle_w = np.full(n, 120.0)
    net_j = energy_j - idle_w * duration_s
    ids = np.char.add("cfg-", cfg.astype(str))
    return pd.DataFrame({
        "run_id": np.char.add(np.char.add(ids, "/r"), rep.astype(str)), "configuration_id": ids,
        "experiment": "bench", "repetition": rep, "model": "llama-3.1-8b", "model_source": "config:x",
        "weights": "random", "architecture": "llama", "quantization": "BF16", "framework": "transformers",
        "dtype": "bfloat16", "engine_args_json": "{}", "workload": "w", "workload_kind": "fixed",
        "batch_size": 8, "num_requests": 8, "input_tokens_total": 1024, "output_tokens_total": out_tokens,
        "duration_s": duration_s, "energy_j": energy_j, "energy_net_j": net_j, "idle_power_w": idle_w,
        "gpu_energy_j": energy_j, "cpu_energy_j": np.nan, "dram_energy_j": np.nan, "mean_power_w": power_w,
        "energy_method": "nvml_counter", "energy_flags": "", "tokens_per_s": out_tokens / duration_s,
        "energy_per_token_j": energy_j / out_tokens, "energy_per_token_net_j": net_j / out_tokens,
        "energy_per_request_j": energy_j / 8, "hardware_id": "1x H100", "cpu_model": "x", "cpu_count": 16,
        "gpu_name": "NVIDIA H100", "gpu_count": 1, "gpu_power_limit_w": 700.0, "driver_version": "580",
        "temperature_start_c": 35.0, "temperature_end_c": 50.0, "sm_clock_mhz": 1980.0,
        "framework_version": "5", "software_json": "{}", "started_at": "2026-11-26T00:00:00+00:00",
        "source": "watt-counts",
    })


RESULT = Path(__file__).parent / "results" / "validate_1m.json"
DEFAULT_ROWS = 1_000_000


def run_once(runs: pd.DataFrame) -> dict[str, object]:
    """Validate then aggregate `runs`; the counts and the seconds of each stage."""
    t0 = time.perf_counter()
    result = validate_table("runs", runs)
    t1 = time.perf_counter()
    requests = pd.DataFrame({"configuration_id": runs["configuration_id"], "ttft_s": 0.1, "tpot_s": 0.02,
                             "e2e_s": 2.0})
    configs = aggregate(result.valid, requests, pd.DataFrame())
    t2 = time.perf_counter()
    return {"rows": len(runs), "valid": len(result.valid), "quarantined": len(result.quarantine),
            "configurations": len(configs), "validate_s": round(t1 - t0, 2),
            "aggregate_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2)}


def machine() -> dict[str, object]:
    """What the figures were measured on: CPUs usable, CPU model, load at the start."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"nproc": nproc, "cpu_model": model or platform.processor() or platform.machine(),
            "python": platform.python_version(), "pandas": pd.__version__, "numpy": np.__version__,
            "loadavg_1_5_15_at_start": load}


def commit() -> str:
    """HEAD of the checkout measured, marked '-dirty' when tracked package files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "wattcounts_pipeline", "schemas", "benchmarks/validate_1m.py"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; best and median are recorded")
    parser.add_argument("--no-record", action="store_true", help=f"do not write {RESULT.name}")
    parser.add_argument("--note", default="", help="recorded with the figures (e.g. whether the machine was shared)")
    args = parser.parse_args(argv)
    host = machine()
    runs = synthetic_runs(args.rows)
    figures = []
    for _ in range(args.repeat):
        figures.append(run_once(runs))
        print(json.dumps({**figures[-1], "machine": f"{host['cpu_model']}, {host['nproc']} CPUs"}), flush=True)
    summary = {stat: {k: fn([f[k] for f in figures]) for k in ("validate_s", "aggregate_s", "total_s")}
               for stat, fn in (("best", min), ("median", lambda v: round(statistics.median(v), 2)))}
    best = min(figures, key=lambda f: f["total_s"])
    print(json.dumps({"best": summary["best"], "median": summary["median"]}))
    if args.no_record or args.rows != DEFAULT_ROWS:
        return
    record = {"benchmark": "benchmarks/validate_1m.py", "goal": "validate + aggregate 1,000,000 run rows <= 3 s",
              "commit": commit(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": host, "rows": best["rows"], "configurations": best["configurations"],
              "repetitions": figures, **summary, **({"note": args.note} if args.note else {})}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"recorded in {RESULT.relative_to(RESULT.parent.parent.parent)}")


if __name__ == "__main__":
    main()
