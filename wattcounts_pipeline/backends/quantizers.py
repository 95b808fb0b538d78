"""Quantized weight formats for transformers, through the libraries Hugging Face users install.

A row's `quantization` names the library as well as the format (`torchao-fp8-row`, `bnb-nf4`), because the
kernels, not the bit width, set the speed: the project's own FP8 linears (`FP8`, backends/fp8.py) and
torchao's float8 are different code. torchao quantizes a loaded model in place (`quantize_`) and is meant to
run under torch.compile (engine arg `compile: graphs`); an eager row of a torchao format measures the
dispatch of its tensor subclass, not the format. bitsandbytes quantizes while `from_pretrained` loads a
checkpoint, so a random-weight model is first saved once as a bf16 checkpoint (`random_checkpoint`) and then
loaded the way users load theirs.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from wattcounts_pipeline.core.errors import BackendError

logger = logging.getLogger(__name__)

TORCHAO_FORMATS = {
    "torchao-fp8-row": "float8 e4m3 weights and dynamic per-token activations, per-row scales, torch._scaled_mm",
    "torchao-int8-wo": "int8 weight-only, per-channel scales",
    "torchao-int4-wo": "int4 weight-only, group size 128, tinygemm (tile-packed) kernel",
}
BNB_FORMATS = {
    "bnb-nf4": "bitsandbytes NF4 (4-bit NormalFloat), bf16 compute, blocks of 64",
    "bnb-int8": "bitsandbytes LLM.int8() (int8 with fp16 outlier columns, threshold 6.0)",
}


def library(quantization: str) -> str | None:
    """Which library a quantization name belongs to ("torchao", "bitsandbytes"), or None for a plain dtype."""
    if quantization in TORCHAO_FORMATS:
        return "torchao"
    if quantization in BNB_FORMATS:
        return "bitsandbytes"
    lowered = quantization.lower()
    if lowered.startswith(("torchao", "bnb")):
        raise BackendError(f"transformers: unknown quantization {quantization!r}; "
                           f"use one of {sorted(TORCHAO_FORMATS) + sorted(BNB_FORMATS)}")
    return None


def _torchao_config(quantization: str) -> Any:
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
        PerRow,
    )

    if quantization == "torchao-fp8-row":
        return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    if quantization == "torchao-int8-wo":
        return Int8WeightOnlyConfig()
    # int4: the tinygemm kernel ships in torch itself; the default (preshuffled) packing needs the `mslk` package
    return Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")


def apply_torchao(model: Any, quantization: str) -> dict[str, Any]:
    """Quantize `model`'s linears in place (torchao skips lm_head only if told: it is a linear too, and vLLM and
    llama.cpp keep it in higher precision, so it stays unquantized here); returns what a row records."""
    try:
        import torchao
        from torchao.quantization import quantize_
    except ImportError as exc:
        raise BackendError(f"transformers: quantization {quantization!r} needs torchao "
                           "(pip install torchao; see README, 'GPU host')") from exc
    import torch

    head = model.get_output_embeddings()

    def is_body_linear(module: Any, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and module is not head

    try:
        quantize_(model, _torchao_config(quantization), filter_fn=is_body_linear)
    except (AssertionError, RuntimeError, ValueError, NotImplementedError) as exc:
        raise BackendError(f"torchao could not apply {quantization!r} on this device: {exc}") from exc
    linears = sum(1 for m in model.modules()
                  if isinstance(m, torch.nn.Linear) and type(m.weight).__name__ != "Parameter"
                  and m is not head)
    return {"quantizer": "torchao", "quantizer_version": torchao.__version__, "quantized_linears": linears,
            "quant_scheme": TORCHAO_FORMATS[quantization]}


def bnb_config(quantization: str, dtype: Any) -> Any:
    """The BitsAndBytesConfig a Hugging Face user passes to from_pretrained for this format."""
    try:
        import bitsandbytes  # noqa: F401  (from_pretrained fails later and less clearly without it)
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise BackendError(f"transformers: quantization {quantization!r} needs bitsandbytes "
                           "(pip install bitsandbytes; see README, 'GPU host')") from exc
    # LLM.int8() warns on every forward that it casts bf16 inputs to fp16: once is enough for a log
    warnings.filterwarnings("once", message="MatMul8bitLt: inputs will be cast")
    if quantization == "bnb-nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def bnb_info(model: Any, quantization: str) -> dict[str, Any]:
    import bitsandbytes

    linears = sum(1 for m in model.modules() if type(m).__name__ in ("Linear4bit", "Linear8bitLt"))
    return {"quantizer": "bitsandbytes", "quantizer_version": bitsandbytes.__version__,
            "quantized_linears": linears, "quant_scheme": BNB_FORMATS[quantization]}


def random_checkpoint(config_dir: Path, dtype: Any, cache_dir: Path, device: str = "cpu") -> Path:
    """A checkpoint folder of random weights (seed 0) for the architecture in `config_dir`, saved once in
    `cache_dir` and reused: bitsandbytes quantizes while loading, so a random model has to be loadable.
    Drawn on `device` (an 8B model's initialization took 5 minutes on a GPU host's CPU, seconds on its GPU).
    Written to a temporary folder and renamed, so an interrupted save never passes for a checkpoint."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    name = f"{Path(config_dir).name}-{str(dtype).removeprefix('torch.')}-seed0"
    target = cache_dir / name
    if (target / "config.json").is_file():
        return target
    partial = cache_dir / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(partial)
    del model
    partial.rename(target)
    logger.info("random checkpoint saved: %s", target)
    return target
