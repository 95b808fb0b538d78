"""TEST FIXTURES ONLY: synthetic configurations tables from a simple physical generator.

Nothing here is a measurement or a result. The generator gives the predictor's tests data with the structure real
data will have (memory-bound decode at small batch, engine efficiency, idle power, noisy repetitions) so training,
cross-validation and recommendation can be exercised before the first real release exists.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.contracts import load_contract

# name in the configurations table -> (params, active params, layers, kv width in values per token of context)
ARCHITECTURES = {
    "meta-llama/Llama-3.2-1B-Instruct": (1.236e9, 1.236e9, 16, 2 * 16 * 8 * 64),
    "meta-llama/Llama-3.2-3B-Instruct": (3.213e9, 3.213e9, 28, 2 * 28 * 8 * 128),
    "meta-llama/Llama-3.1-8B-Instruct": (8.03e9, 8.03e9, 32, 2 * 32 * 8 * 128),
    "Qwen/Qwen2.5-7B-Instruct": (7.616e9, 7.616e9, 28, 2 * 28 * 4 * 128),
    "Qwen/Qwen2.5-14B-Instruct": (14.77e9, 14.77e9, 48, 2 * 48 * 8 * 128),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (46.7e9, 12.88e9, 32, 2 * 32 * 8 * 128),
}
# NVML name -> (bandwidth GB/s, bf16 TFLOP/s, TDP W)
GPUS = {"NVIDIA H100 80GB HBM3": (3350, 989.4, 700), "NVIDIA A100-SXM4-80GB": (2039, 312.0, 400),
        "NVIDIA L40S": (864, 362.05, 350)}
# (framework, quantization, dtype, engine args, bandwidth efficiency, per-layer step overhead s)
SETUPS = [
    ("transformers", "BF16", "bfloat16", {}, 0.35, 60e-6),
    ("transformers", "BF16", "bfloat16", {"compile": True}, 0.6, 10e-6),
    ("vllm", "BF16", "bfloat16", {}, 0.75, 8e-6),
    ("vllm", "FP8", "auto", {}, 0.7, 8e-6),
    ("llamacpp", "Q4_K_M", "auto", {"n_gpu_layers": -1}, 0.55, 20e-6),
]
BYTES = {"BF16": 2.0, "FP8": 1.0625, "Q4_K_M": 0.6}


def _quality(params: float, bytes_per_weight: float) -> float:
    return float(np.clip(0.3 + 0.09 * math.log10(params / 1e8) - 0.08 * max(0.0, 1.0 - bytes_per_weight), 0, 1))


def make_configurations(n_rows: int = 160, seed: int = 0, gpus: list[str] | None = None,
                        setups: list[int] | None = None, models: list[str] | None = None,
                        batch_sizes: tuple[int, ...] = (1, 4, 16, 64)) -> pd.DataFrame:
    """A contract-conformed synthetic configurations table (see module docstring: fixtures, not data)."""
    rng = np.random.default_rng(seed)
    gpus = gpus or list(GPUS)
    setups = setups if setups is not None else list(range(len(SETUPS)))
    models = models or list(ARCHITECTURES)
    rows = []
    for i in range(n_rows):
        model = models[rng.integers(len(models))]
        gpu = gpus[rng.integers(len(gpus))]
        framework, quant, dtype, args, bw_eff, overhead_s = SETUPS[setups[rng.integers(len(setups))]]
        batch = int(rng.choice(batch_sizes))
        n_in, n_out = float(rng.choice([128, 512, 2048])), float(rng.choice([64, 256]))
        params, active, layers, kv_values = ARCHITECTURES[model]
        bw, peak, tdp = GPUS[gpu]
        count = 2 if params * BYTES[quant] > 60e9 else 1
        touched = params if active == params else params - (params - active) * 4 / 3 * (0.75 ** batch)
        bytes_step = touched * BYTES[quant] + batch * kv_values * (n_in + n_out / 2) * 2
        memory_s = bytes_step / (bw * 1e9 * count * bw_eff)
        compute_s = 2 * active * batch / (peak * 1e12 * count * 0.4)
        step_s = max(memory_s, compute_s) + layers * overhead_s
        prefill_s = max(memory_s, 2 * active * batch * n_in / (peak * 1e12 * count * 0.5)) + layers * overhead_s
        idle_w = 0.12 * tdp * count
        power_w = idle_w + (tdp * count - idle_w) * (0.35 + 0.5 * compute_s / step_s)
        noise = rng.lognormal(0.0, 0.04, size=4)
        tpot = step_s * noise[0]
        tps = batch / step_s * noise[1]
        ttft = prefill_s * noise[2]
        e_tok = power_w * step_s / batch * noise[3]
        net = (power_w - idle_w) * step_s / batch * noise[3]
        real = "Mixtral" not in model
        quality = _quality(params, BYTES[quant]) + rng.normal(0, 0.01) if real else None
        e2e = ttft + (n_out - 1) * tpot
        rows.append({
            "configuration_id": f"synthetic-{seed}-{i}", "experiment": "synthetic-test-fixture", "model": model,
            "weights": "real" if real else "random", "architecture": "llama", "quantization": quant,
            "framework": framework, "dtype": dtype, "engine_args_json": json.dumps(args), "workload": "fixed",
            "batch_size": batch, "input_tokens": n_in, "output_tokens": n_out, "n_runs": 3,
            "energy_per_token_j": e_tok, "energy_per_token_j_std": 0.02 * e_tok,
            "energy_per_token_j_ci95_low": 0.95 * e_tok, "energy_per_token_j_ci95_high": 1.05 * e_tok,
            "energy_per_token_net_j": net, "energy_per_request_j": e_tok * n_out, "tokens_per_s": tps,
            "tokens_per_s_ci95_low": 0.97 * tps, "tokens_per_s_ci95_high": 1.03 * tps, "mean_power_w": power_w,
            "idle_power_w": idle_w, "ttft_p50_s": ttft, "ttft_p90_s": 1.2 * ttft, "tpot_p50_s": tpot,
            "tpot_p90_s": 1.1 * tpot, "e2e_p50_s": e2e, "e2e_p90_s": 1.15 * e2e, "energy_method": "nvml_counter",
            "hardware_id": f"synthetic-{gpu}", "gpu_name": gpu, "gpu_count": count,
            "cpu_model": "Intel(R) Xeon(R) Platinum 8480+", "temperature_max_c": 60.0,
            "cost_per_1m_tokens_usd": e_tok * 1e6 / 3.6e6 * 0.15, "co2_per_1m_tokens_g": e_tok * 1e6 / 3.6e6 * 400,
            "quality_tasks": "wc_arc_easy" if real else "", "quality_acc_mean": quality, "source": "watt-counts",
        })
    return load_contract("configurations").conform(pd.DataFrame(rows))
