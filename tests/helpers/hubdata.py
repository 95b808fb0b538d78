"""Tiny hand-made tables, conformed to the contracts, for the release and publishing tests."""

from __future__ import annotations

import json

import pandas as pd

from wattcounts_pipeline.core.contracts import load_contract

HARDWARE = {"cpu": ("cpu-epyc-x16", None, 0), "h100": ("NVIDIA H100 80GB HBM3 x1", "NVIDIA H100 80GB HBM3", 1)}


def configurations(batch_sizes: tuple[int, ...] = (1, 4, 16), models: tuple[str, ...] = ("gemma3-270m", "llama-8b"),
                   scale: float = 1.0) -> pd.DataFrame:
    """One configuration per model × batch size; J/token falls with batch size, as it does on real hardware."""
    rows = []
    for m, model in enumerate(models):
        hw_id, gpu, gpus = HARDWARE["h100" if m else "cpu"]
        framework = "transformers" if m else "llamacpp"
        for b in batch_sizes:
            jpt = scale * (2.0 + m) / b ** 0.7
            rows.append({
                "configuration_id": f"{model}-{framework}-b{b}-{m:02d}{b:04d}", "experiment": "default.yaml",
                "model": model, "weights": "random" if m else "real", "architecture": "llama" if m else "gemma3",
                "quantization": "BF16" if m else "Q4_K_M", "framework": framework, "dtype": "bfloat16",
                "engine_args_json": json.dumps({"max_model_len": 512}), "workload": "fixed-128-256",
                "batch_size": b, "input_tokens": 128.0, "output_tokens": 256.0, "n_runs": 3,
                "energy_per_token_j": jpt, "energy_per_token_j_std": 0.05 * jpt,
                "energy_per_token_j_ci95_low": 0.9 * jpt, "energy_per_token_j_ci95_high": 1.1 * jpt,
                "energy_per_token_net_j": 0.6 * jpt, "energy_per_request_j": 256 * jpt,
                "tokens_per_s": 40.0 * b ** 0.8, "tokens_per_s_ci95_low": 38.0 * b ** 0.8,
                "tokens_per_s_ci95_high": 42.0 * b ** 0.8, "mean_power_w": 80.0 + 40 * m, "idle_power_w": 30.0,
                "ttft_p50_s": 0.05 * b, "ttft_p90_s": 0.08 * b, "tpot_p50_s": 0.02, "tpot_p90_s": 0.03,
                "e2e_p50_s": 5.0, "e2e_p90_s": 6.0, "energy_method": "nvml_counter" if m else "estimate",
                "hardware_id": hw_id, "gpu_name": gpu, "gpu_count": gpus, "cpu_model": "AMD EPYC 9654",
                "temperature_max_c": 61.0 if m else None, "cost_per_1m_tokens_usd": jpt * 1e6 / 3.6e6 * 0.15,
                "co2_per_1m_tokens_g": jpt * 1e6 / 3.6e6 * 400, "quality_tasks": "" if m else "arc_easy",
                "quality_acc_mean": None if m else 0.41, "source": "watt-counts",
            })
    return load_contract("configurations").conform(pd.DataFrame(rows))


def runs(configs: pd.DataFrame) -> pd.DataFrame:
    """Three repetitions per configuration, consistent with its means."""
    rows = []
    for c in configs.itertuples(index=False):
        for r in range(3):
            tokens = 256 * c.batch_size
            energy = c.energy_per_token_j * tokens
            duration = tokens / c.tokens_per_s
            rows.append({
                "run_id": f"{c.configuration_id}/r{r}", "configuration_id": c.configuration_id,
                "experiment": c.experiment, "repetition": r, "model": c.model, "model_source": "config:",
                "weights": c.weights, "architecture": c.architecture, "quantization": c.quantization,
                "framework": c.framework, "dtype": c.dtype, "engine_args_json": c.engine_args_json,
                "workload": c.workload, "workload_kind": "fixed", "batch_size": c.batch_size,
                "num_requests": c.batch_size, "input_tokens_total": 128 * c.batch_size,
                "output_tokens_total": tokens, "duration_s": duration, "energy_j": energy,
                "energy_net_j": energy - c.idle_power_w * duration, "idle_power_w": c.idle_power_w,
                "gpu_energy_j": energy if c.gpu_count else None, "cpu_energy_j": None if c.gpu_count else energy,
                "dram_energy_j": None, "mean_power_w": energy / duration, "energy_method": c.energy_method,
                "energy_flags": "", "tokens_per_s": c.tokens_per_s, "energy_per_token_j": c.energy_per_token_j,
                "energy_per_token_net_j": (energy - c.idle_power_w * duration) / tokens,
                "energy_per_request_j": energy / c.batch_size, "hardware_id": c.hardware_id,
                "cpu_model": c.cpu_model, "cpu_count": 16, "gpu_name": c.gpu_name, "gpu_count": c.gpu_count,
                "gpu_power_limit_w": 700.0 if c.gpu_count else None, "driver_version": "580.159.04" if c.gpu_count else None,
                "temperature_start_c": 40.0 if c.gpu_count else None, "temperature_end_c": 55.0 if c.gpu_count else None,
                "sm_clock_mhz": 1980.0 if c.gpu_count else None,
                "framework_version": "1.0", "software_json": "{}", "started_at": f"2026-11-26T10:0{r}:00Z",
                "source": "watt-counts",
            })
    return load_contract("runs").conform(pd.DataFrame(rows))


def quality() -> pd.DataFrame:
    row = {"model": "gemma3-270m", "model_revision": "sha256:abc", "quantization": "Q4_K_M",
           "framework": "llamacpp", "task": "arc_easy", "task_version": "1.0", "num_fewshot": 0, "limit": 50,
           "metric": "acc", "value": 0.41, "stderr": 0.07, "n_samples": 50, "lm_eval_version": "0.4.13",
           "evaluated_at": "2026-11-26T11:00:00Z"}
    return load_contract("quality").conform(pd.DataFrame([row]))


def release_tables(scale: float = 1.0, batch_sizes: tuple[int, ...] = (1, 4, 16)) -> dict[str, pd.DataFrame]:
    configs = configurations(batch_sizes=batch_sizes, scale=scale)
    return {"configurations": configs, "runs": runs(configs), "quality": quality()}
