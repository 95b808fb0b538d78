"""Validate and aggregate 1,000,000 run rows; the goal is ≤ 10 s on a 2-core machine.

Usage: python benchmarks/validate_1m.py [n_rows]. Rows are synthetic but physically consistent
(10,000 configurations × 100 repetitions); this measures our validation code, not hardware.
"""

from __future__ import annotations

import json
import platform
import sys
import time

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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = synthetic_runs(n)
    t0 = time.perf_counter()
    result = validate_table("runs", runs)
    t1 = time.perf_counter()
    requests = pd.DataFrame({"configuration_id": runs["configuration_id"], "ttft_s": 0.1, "tpot_s": 0.02,
                             "e2e_s": 2.0})
    configs = aggregate(result.valid, requests, pd.DataFrame())
    t2 = time.perf_counter()
    print(json.dumps({"rows": n, "valid": len(result.valid), "quarantined": len(result.quarantine),
                      "configurations": len(configs), "validate_s": round(t1 - t0, 2),
                      "aggregate_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
                      "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs"}))


if __name__ == "__main__":
    main()
