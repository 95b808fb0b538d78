"""Features for the predictor: model shape, weight format, engine, workload, device and roofline physics.

The roofline numbers carry most of the signal across hardware and model size (decode is memory-bound at small
batch, compute-bound at large batch), so the learned part only has to explain how far each engine falls short
of them. Inputs are configurations-like rows: `model` (+ `architecture`), `quantization`, `dtype`, `framework`,
`engine_args_json` (or a ready `mode`), `batch_size`, `input_tokens`, `output_tokens`, and the device as either
`hardware` (catalog name) or `gpu_name` + `gpu_count` + `cpu_model`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.vocab import FRAMEWORKS
from wattcounts_pipeline.model.catalog import (
    Architecture,
    Hardware,
    get_architecture,
    get_hardware,
    hardware_for_row,
)
from wattcounts_pipeline.model.errors import ModelError

logger = logging.getLogger(__name__)

# Bytes per weight: GGUF bits per weight / 8 (block scales included), plain dtypes exact.
QUANT_BYTES_PER_WEIGHT: dict[str, float] = {
    "F32": 4.0, "FP32": 4.0,
    "BF16": 2.0, "F16": 2.0, "FP16": 2.0,
    "FP8": 1.0625, "Q8_0": 1.0625, "INT8": 1.0,
    "Q6_K": 0.82,
    "Q5_K_M": 0.71, "Q5_K_S": 0.69, "Q5_0": 0.6875,
    "Q4_K_M": 0.60, "Q4_K_S": 0.57, "Q4_0": 0.5625,
    "IQ4_XS": 0.53125,  # 4.25 bits per weight (llama.cpp's type table)
    "AWQ": 0.53, "GPTQ": 0.53, "INT4": 0.53,  # 4-bit with a scale and zero per group of 128
    "Q3_K_M": 0.49,
    "Q2_K": 0.41,
    # torchao and bitsandbytes through transformers (backends/quantizers.py), scales included
    "TORCHAO_FP8_ROW": 1.0, "TORCHAO_INT8_WO": 1.0, "TORCHAO_INT4_WO": 0.53,
    "BNB_INT8": 1.0, "BNB_NF4": 0.5625,  # NF4: 4 bits and an fp32 absmax per block of 64
}
FP8_TENSOR_CORE = {"FP8", "TORCHAO_FP8_ROW"}  # formats whose matmuls run at the chip's FP8 rate
DTYPE_QUANT = {"float32": "F32", "fp32": "F32", "f32": "F32", "bfloat16": "BF16", "bf16": "BF16",
               "float16": "F16", "fp16": "F16", "f16": "F16", "half": "F16"}
UNQUANTIZED = {"", "NONE", "AUTO", "FULL"}

MODEL_FEATURES = ["log_total_params", "log_active_params", "num_layers", "log_hidden_size", "num_kv_heads",
                  "log_vocab_size", "is_moe", "bytes_per_weight",
                  *(f"fw_{f}" for f in FRAMEWORKS)]
"""What quality may depend on: the model, its weight format and the engine, never the device or load."""
PHYSICS_FEATURES = [*MODEL_FEATURES, "log_weight_gb", "compiled",
                    "log_batch_size", "log_input_tokens", "log_output_tokens", "is_gpu", "device_count",
                    "log_roofline_step_s", "log_roofline_prefill_s", "log_roofline_tokens_per_s",
                    "log_roofline_energy_j_per_token", "log_compute_to_memory", "log_prefill_compute_to_memory"]
"""Model, workload, device-kind and roofline features, finite for any catalog row. The device's bandwidth, peak
FLOP/s and TDP enter only through the roofline columns: given raw, trees learn per-device offsets that do not
transfer to an unmeasured device. The predictor's corrections use a size-free subset
(`predictor.RESIDUAL_FEATURES`)."""


def quantization_key(quantization: str, dtype: str = "") -> str:
    """Canonical weight-format name: the quantization, or the dtype when the weights are not quantized."""
    quant = str(quantization or "").strip().upper().replace("-", "_")
    if quant in UNQUANTIZED:
        quant = DTYPE_QUANT.get(str(dtype or "").strip().lower(), quant)
    if quant not in QUANT_BYTES_PER_WEIGHT:
        raise ModelError(f"unknown quantization {quantization!r} (dtype {dtype!r}); known: "
                         f"{', '.join(QUANT_BYTES_PER_WEIGHT)}")
    return quant


def bytes_per_weight(quantization: str, dtype: str = "") -> float:
    return QUANT_BYTES_PER_WEIGHT[quantization_key(quantization, dtype)]


def engine_mode(framework: str, engine_args_json: str | None) -> str:
    """"compiled" when the engine captures/compiles its graph (vLLM unless enforce_eager; transformers `compile`)."""
    try:
        args: dict[str, Any] = json.loads(engine_args_json or "{}") or {}
    except json.JSONDecodeError as exc:
        raise ModelError(f"engine_args_json is not JSON: {engine_args_json!r} ({exc})") from exc
    if framework == "vllm":
        return "eager" if args.get("enforce_eager") else "compiled"
    compiled = args.get("compile") or args.get("torch_compile") or args.get("cache_implementation") == "static"
    return "compiled" if compiled else "eager"


def peak_tflops(hw: Hardware, quant: str) -> float:
    """Tensor rate the weights run at: FP8 where the chip has it, TF32 (half of BF16) for F32, else BF16."""
    if quant in FP8_TENSOR_CORE and hw.peak_fp8_tflops:
        return hw.peak_fp8_tflops
    if quant == "F32":
        return hw.peak_bf16_tflops / 2
    return hw.peak_bf16_tflops


@dataclass(frozen=True)
class Roofline:
    """Best-case times on a device: a decode step is limited by bytes moved or by FLOPs, whichever is slower."""

    weight_bytes: float
    kv_bytes_per_step: float
    memory_s: float
    compute_s: float
    step_s: float
    prefill_memory_s: float
    prefill_compute_s: float
    prefill_s: float
    tokens_per_s: float
    s_per_token: float
    energy_j_per_token: float


def weights_read_per_step(arch: Architecture, batch_size: int) -> float:
    """Parameters streamed from memory per decode step: all of a dense model; for a mixture of experts, the
    shared weights plus the experts that `batch_size` tokens routed uniformly would touch."""
    if not arch.is_moe:
        return float(arch.total_params)
    p_untouched = (1 - arch.experts_per_token / arch.num_experts) ** batch_size
    return arch.total_params - arch.expert_params * p_untouched


def working_devices(device_count: int, parallelism: str) -> int:
    """Devices working at once: all of them under tensor parallelism, one under a pipeline (its stages run one
    after another for a batch, so bandwidth and FLOP/s are one device's while all of them draw power)."""
    return device_count if parallelism == "tensor" else 1


def default_parallelism(framework: str, device_count: int) -> str:
    """How an engine spreads a model over `device_count` devices unless told: vLLM shards each layer (tensor),
    transformers (`device_map`) and llama.cpp (`--split-mode layer`) split the layers (pipeline)."""
    if device_count <= 1:
        return "none"
    return "tensor" if framework == "vllm" else "pipeline"


def roofline(arch: Architecture, hw: Hardware, *, quant: str, batch_size: int, input_tokens: float,
             output_tokens: float, device_count: int = 1, kv_bytes_per_value: float = 2.0,
             parallelism: str = "tensor") -> Roofline:
    """Roofline of one decode step for `batch_size` sequences at the mean context (input + output/2).

    step = max((weight bytes + KV bytes) / bandwidth, 2 · active params · batch / peak FLOP/s), bandwidth and
    peak those of the `working_devices`; per output token: step / batch; energy guess: TDP · devices · step /
    batch; prefill (TTFT): one pass over all prompts, max(weight bytes / bandwidth, 2 · active params · batch ·
    input / peak).
    """
    working = working_devices(device_count, parallelism)
    bandwidth_b_s = hw.memory_bandwidth_gb_s * 1e9 * working
    peak_flop_s = peak_tflops(hw, quant) * 1e12 * working
    bpw = QUANT_BYTES_PER_WEIGHT[quant]
    weight_bytes = weights_read_per_step(arch, batch_size) * bpw
    context = input_tokens + output_tokens / 2
    kv_bytes = batch_size * arch.kv_elements_per_token * context * kv_bytes_per_value
    memory_s = (weight_bytes + kv_bytes) / bandwidth_b_s
    compute_s = 2 * arch.active_params * batch_size / peak_flop_s
    step_s = max(memory_s, compute_s)
    prefill_memory_s = weight_bytes / bandwidth_b_s
    prefill_compute_s = 2 * arch.active_params * batch_size * max(input_tokens, 1.0) / peak_flop_s
    return Roofline(weight_bytes=weight_bytes, kv_bytes_per_step=kv_bytes, memory_s=memory_s, compute_s=compute_s,
                    step_s=step_s, prefill_memory_s=prefill_memory_s, prefill_compute_s=prefill_compute_s,
                    prefill_s=max(prefill_memory_s, prefill_compute_s), tokens_per_s=batch_size / step_s,
                    s_per_token=step_s / batch_size,
                    energy_j_per_token=hw.tdp_w * device_count * step_s / batch_size)


MOE_GATHER_PASSES = 3.0
"""Passes over a routed expert's weights per (token, expert) pair where decode copies the experts it routes to:
transformers (5.x) decodes a mixture of experts on a GPU with `batched_mm` (generation's
`_optimize_model_for_decode`), which gathers a copy of the selected expert's weights for every pair (read and
write) and multiplies against that copy (read again). Its prefill, and engines with a fused MoE kernel, read
each touched expert once (`weights_read_per_step`)."""


def decode_weights_read(arch: Architecture, batch_size: int, gathers_experts: bool) -> float:
    """Parameters streamed from memory per decode step: `weights_read_per_step`, or, where the engine gathers
    expert weights per token (`gathers_experts`), the shared weights plus MOE_GATHER_PASSES passes over each
    of the batch × experts-per-token routed experts. Measured: Mixtral-8x7B on transformers, TPOT ∝ batch
    (33, 126, 476 ms at batch 1, 8, 32 on an H200), which touching each expert once cannot give."""
    if not (arch.is_moe and gathers_experts):
        return weights_read_per_step(arch, batch_size)
    routed = batch_size * arch.experts_per_token * arch.num_layers * arch.mlp_params_per_expert
    return arch.total_params - arch.expert_params + MOE_GATHER_PASSES * routed


def non_embedding_params(arch: Architecture) -> float:
    """Weights multiplied per token: all but the input embedding table (a lookup, no FLOPs); active experts only."""
    return float(arch.active_params - arch.embedding_params
                 + (arch.embedding_params if arch.tie_word_embeddings else 0))


def run_work(arch: Architecture, hw: Hardware, *, quant: str, batch_size: int, input_tokens: float,
             output_tokens: float, device_count: int = 1, kv_bytes_per_value: float = 2.0,
             gathers_experts: bool = False, parallelism: str = "tensor") -> dict[str, float]:
    """The ideal (roofline) seconds of the two phases of a run, split by what bounds them.

    Prefill of `batch_size` prompts: FLOPs 2 · non-embedding params (the LM head counted, it is applied to
    one position per prompt at most, but the matmuls dominate) · prompt tokens + attention 4 · layers ·
    prompt² / 2 · query width (causal), bytes the weights once plus the KV written. A decode step at the mean
    context: FLOPs 2 · non-embedding params · batch + attention, bytes the weights read (`decode_weights_read`:
    `gathers_experts` where the engine copies expert weights per token) plus the KV cache. Bandwidth and peak
    are those of the `working_devices`.
    """
    working = working_devices(device_count, parallelism)
    bandwidth_b_s = hw.memory_bandwidth_gb_s * 1e9 * working
    peak_flop_s = peak_tflops(hw, quant) * 1e12 * working
    bpw = QUANT_BYTES_PER_WEIGHT[quant]
    params = non_embedding_params(arch)
    q_width = arch.num_heads * arch.head_dim
    kv_per_token = arch.kv_elements_per_token * kv_bytes_per_value
    n_in = max(input_tokens, 1.0)
    context = input_tokens + output_tokens / 2
    prefill_flops = batch_size * (2 * params * n_in + 2 * arch.num_layers * n_in * n_in * q_width)
    prefill_bytes = weights_read_per_step(arch, int(min(batch_size * n_in, 1e6))) * bpw + batch_size * n_in * kv_per_token
    decode_flops = batch_size * (2 * params + 4 * arch.num_layers * context * q_width)
    decode_bytes = (decode_weights_read(arch, batch_size, gathers_experts) * bpw
                    + batch_size * context * kv_per_token)
    return {"prefill_compute_s": prefill_flops / peak_flop_s, "prefill_memory_s": prefill_bytes / bandwidth_b_s,
            "decode_compute_s": decode_flops / peak_flop_s, "decode_memory_s": decode_bytes / bandwidth_b_s}


def _idle_power(row: dict[str, Any]) -> float:
    value = _present(row, "idle_power_w")
    try:
        value = float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        value = math.nan
    return value if math.isfinite(value) and value > 0 else math.nan


def _present(row: dict[str, Any], key: str) -> Any:
    """The row's value, or None where the column is absent or null (None, NaN or pandas' NA)."""
    value = row.get(key)
    return None if pd.api.types.is_scalar(value) and pd.isna(value) else value


def _row_hardware(row: dict[str, Any]) -> tuple[Hardware, int]:
    """The row's device and how many of it ran the model (a CPU counts once)."""
    count = _present(row, "gpu_count")
    if _present(row, "hardware"):
        hw = get_hardware(row["hardware"])
        count = 1 if count is None else int(count)
    else:
        count = int(count or 0)
        hw = hardware_for_row(_present(row, "gpu_name"), count, _present(row, "cpu_model"))
    return hw, max(count, 1) if hw.is_gpu else 1


def _row_parallelism(row: dict[str, Any], framework: str, devices: int) -> str:
    """The row's `parallelism` (or its engine args'), else the engine's default (`default_parallelism`)."""
    if devices <= 1:
        return "none"
    given = _present(row, "parallelism")
    if given is None:
        try:
            given = (json.loads(_present(row, "engine_args_json") or "{}") or {}).get("parallelism")
        except json.JSONDecodeError:
            given = None
    return str(given) if given in ("pipeline", "tensor") else default_parallelism(framework, devices)


def _featurize_row(row: dict[str, Any]) -> dict[str, Any]:
    arch = get_architecture(str(_present(row, "model") or ""), str(_present(row, "architecture") or ""))
    hw, devices = _row_hardware(row)
    quant = quantization_key(_present(row, "quantization") or "", _present(row, "dtype") or "")
    framework = str(row["framework"])
    mode = _present(row, "mode") or engine_mode(framework, _present(row, "engine_args_json"))
    parallelism = _row_parallelism(row, framework, devices)
    batch, n_in, n_out = int(row["batch_size"]), float(row["input_tokens"]), float(row["output_tokens"])
    kv_bytes_per_value = 4.0 if quant == "F32" else 2.0
    rl = roofline(arch, hw, quant=quant, batch_size=batch, input_tokens=n_in, output_tokens=n_out,
                  device_count=devices, kv_bytes_per_value=kv_bytes_per_value, parallelism=parallelism)
    full_context_kv_gb = batch * arch.kv_elements_per_token * (n_in + n_out) * kv_bytes_per_value / 1e9
    work = run_work(arch, hw, quant=quant, batch_size=batch, input_tokens=n_in, output_tokens=n_out,
                    device_count=devices, kv_bytes_per_value=kv_bytes_per_value,
                    gathers_experts=framework == "transformers" and hw.is_gpu, parallelism=parallelism)
    return {
        "arch_key": arch.key, "hardware_key": hw.key, "framework": framework, "mode": mode, "quant_key": quant,
        "parallelism": parallelism,
        "log_total_params": math.log(arch.total_params), "log_active_params": math.log(arch.active_params),
        "num_layers": arch.num_layers, "log_hidden_size": math.log(arch.hidden_size),
        "num_kv_heads": arch.num_kv_heads, "log_vocab_size": math.log(arch.vocab_size),
        "is_moe": float(arch.is_moe), "bytes_per_weight": QUANT_BYTES_PER_WEIGHT[quant],
        **{f"fw_{f}": float(framework == f) for f in FRAMEWORKS},
        "log_weight_gb": math.log(arch.total_params * QUANT_BYTES_PER_WEIGHT[quant] / 1e9),
        "compiled": float(mode == "compiled"),
        "log_batch_size": math.log(batch), "log_input_tokens": math.log1p(n_in), "log_output_tokens": math.log(n_out),
        "is_gpu": float(hw.is_gpu), "device_count": devices,
        "log_roofline_step_s": math.log(rl.step_s), "log_roofline_prefill_s": math.log(rl.prefill_s),
        "log_roofline_tokens_per_s": math.log(rl.tokens_per_s),
        "log_roofline_energy_j_per_token": math.log(rl.energy_j_per_token),
        "log_compute_to_memory": math.log(rl.compute_s / rl.memory_s),
        "log_prefill_compute_to_memory": math.log(rl.prefill_compute_s / rl.prefill_memory_s),
        "roofline_step_s": rl.step_s, "roofline_prefill_s": rl.prefill_s, "roofline_tokens_per_s": rl.tokens_per_s,
        "roofline_energy_j_per_token": rl.energy_j_per_token,
        "batch_size": batch, "input_tokens": n_in, "output_tokens": n_out, "gpu_count": devices if hw.is_gpu else 0,
        "logits_per_step": float(batch * arch.vocab_size),
        "memory_needed_gb": arch.total_params * QUANT_BYTES_PER_WEIGHT[quant] / 1e9 + full_context_kv_gb,
        "memory_available_gb": hw.memory_gb * devices if hw.memory_gb else np.nan,
        "log_num_layers": math.log(arch.num_layers), "log_non_embedding_params": math.log(non_embedding_params(arch)),
        "log_prefill_share": math.log(work["prefill_compute_s"] / (work["prefill_compute_s"]
                                                                  + n_out * work["decode_compute_s"])),
        "idle_power_w": _idle_power(row), "tdp_w": hw.tdp_w * devices,
        "working_tdp_w": hw.tdp_w * working_devices(devices, parallelism),
        **work,
    }


def featurize(frame: pd.DataFrame, *, skip_unknown: bool = False) -> tuple[pd.DataFrame, dict[Any, str]]:
    """Feature rows (same index as `frame`) and, with `skip_unknown`, the rows left out with the reason why
    (unknown architecture, hardware or quantization); without it the first bad row raises, naming the row."""
    rows, index, skipped = [], [], {}
    for key, row in zip(frame.index, frame.to_dict("records"), strict=True):
        try:
            rows.append(_featurize_row(row))
            index.append(key)
        except ModelError as exc:
            if not skip_unknown:
                raise type(exc)(f"row {key!r}: {exc}") from exc
            skipped[key] = str(exc)
    return pd.DataFrame(rows, index=pd.Index(index, name=frame.index.name)), skipped


def build_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Features of every row; an unknown architecture, device or quantization raises."""
    return featurize(frame)[0]
