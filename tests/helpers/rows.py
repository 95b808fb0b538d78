"""Physically consistent rows for contract tests (test data, never published)."""

from __future__ import annotations

import json
from typing import Any


def run_row(energy_j: float = 2000.0, output_tokens: int = 256, duration_s: float = 10.0,
            idle_power_w: float = 120.0, nvml: bool = True, repetition: int = 0, **overrides: Any) -> dict[str, Any]:
    """One run row whose derived columns agree with their inputs."""
    num_requests = 4
    row = {
        "run_id": f"cfg-12345678/r{repetition}", "configuration_id": "cfg-12345678", "experiment": "test",
        "repetition": repetition, "model": "llama-3.1-8b", "model_source": "config:models/llama",
        "weights": "random", "architecture": "llama", "quantization": "BF16", "framework": "transformers",
        "dtype": "bfloat16", "engine_args_json": json.dumps({"compile": False}), "workload": "fixed-128-256",
        "workload_kind": "fixed", "batch_size": 4, "num_requests": num_requests,
        "input_tokens_total": 512, "output_tokens_total": output_tokens, "duration_s": duration_s,
        "energy_j": energy_j, "energy_net_j": energy_j - idle_power_w * duration_s, "idle_power_w": idle_power_w,
        "gpu_energy_j": energy_j if nvml else None, "cpu_energy_j": None if nvml else energy_j,
        "dram_energy_j": None, "mean_power_w": energy_j / duration_s,
        "energy_method": "nvml_counter" if nvml else "estimate", "energy_flags": "",
        "tokens_per_s": output_tokens / duration_s, "energy_per_token_j": energy_j / output_tokens,
        "energy_per_token_net_j": (energy_j - idle_power_w * duration_s) / output_tokens,
        "energy_per_request_j": energy_j / num_requests,
        "hardware_id": "1x NVIDIA H100" if nvml else "Xeon (2 CPUs)", "cpu_model": "Xeon", "cpu_count": 2,
        "gpu_name": "NVIDIA H100" if nvml else None, "gpu_count": 1 if nvml else 0,
        "gpu_power_limit_w": 700.0 if nvml else None, "driver_version": "580.159.04" if nvml else None,
        "temperature_start_c": 35.0 if nvml else None, "temperature_end_c": 41.0 if nvml else None,
        "sm_clock_mhz": 1980.0 if nvml else None, "framework_version": "5.17.0",
        "software_json": json.dumps({"python": "3.12"}), "started_at": "2026-11-26T02:00:00+00:00",
        "source": "watt-counts",
    }
    row.update(overrides)
    return row
