"""The README's "one model, one GPU, every engine and format" tables, from a dataset release.

Usage: python benchmarks/engines_table.py RELEASE_DIR [MODEL ...]     (default: llama-3.1-8b qwen2.5-7b)
RELEASE_DIR holds data/configurations.parquet (`benchmarks/recorded_release.py OUT` builds one from the
recorded GPU sweeps alone). Prints one markdown table per model and card (the single-GPU rows of each
`gpu_name`, H200 first, each against its own catalog bandwidth): each engine (llama.cpp in-process,
llama-server, transformers by compile path) and weight format on one GPU, decode-128-256, gross J/token
(mean), client-side tokens/s and TPOT p50 at batch 1, 8 and 32, and batch-1 tokens/s as a share of the
memory roofline: the weight bytes a decode step reads (`gguf_random.decode_step_bytes`: every tensor but
the untied input-embedding table, of which one row is gathered; for the FP8, torchao and bitsandbytes formats
the same tensors with the decoder's linears at that format's bytes per weight) over the card's catalog
bandwidth.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.backends.gguf_random import Shape, decode_step_bytes, tensors
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.hub.card import markdown_table
from wattcounts_pipeline.hub.figures import compile_mode
from wattcounts_pipeline.model.catalog import hardware_for_row

DECODE = "decode-128-256"
BATCHES = (1, 8, 32)
CONFIGS = Path("models") / "configs"
# Weight formats whose decode bytes a GGUF plan gives: llama.cpp's types, and 16-bit transformers weights (the
# same tensors as F16).
PLAN_FORMAT = {"BF16": "F16", "FP16": "F16"}
# The transformers formats that quantize the decoder's linears and keep everything else (lm_head, norms) in
# bf16: bytes per weight of a linear with K inputs, its scales included. FP8 and LLM.int8: one byte and an fp32
# scale per output row; torchao int8: a bf16 scale per row; torchao int4 (tinygemm): 4 bits and a bf16 scale
# and zero per group of 128; NF4: 4 bits and an fp32 absmax per block of 64 (no double quantization).
LINEAR_BYTES = {
    "FP8": lambda k: 1 + 4 / k, "torchao-fp8-row": lambda k: 1 + 4 / k, "bnb-int8": lambda k: 1 + 4 / k,
    "torchao-int8-wo": lambda k: 1 + 2 / k, "torchao-int4-wo": lambda k: 0.5 + 4 / 128,
    "bnb-nf4": lambda k: 0.5 + 4 / 64,
}


def linear_format_step_bytes(shape: Shape, quantization: str) -> int:
    """Weight bytes of one batch-1 decode step for a LINEAR_BYTES format: the decoder's matrices at that
    format's bytes per weight, every other tensor in bf16, one gathered row of an untied input embedding."""
    per_weight = LINEAR_BYTES[quantization]
    total = 0.0
    for t in tensors(shape):
        n = math.prod(t.shape)
        if t.name == "token_embd.weight":
            total += 2 * (n if shape.tied else t.shape[1])
        elif t.name.startswith("blk.") and len(t.shape) == 2:
            total += n * per_weight(t.shape[1])
        else:
            total += 2 * n
    return int(total)


def engine(row: pd.Series) -> str:
    if row["framework"] == "llamacpp":
        return "llama.cpp in-process"
    if row["framework"] == "llamacpp-server":
        return "llama-server"
    return f"{row['framework']} {compile_mode(row['engine_args_json'])}"


def roofline_share(model: str, quantization: str, tokens_per_s: float, bandwidth_gb_s: float) -> str:
    fmt = PLAN_FORMAT.get(quantization, quantization)
    shape = Shape.from_config(CONFIGS / model)
    try:
        step_bytes = (linear_format_step_bytes(shape, fmt) if fmt in LINEAR_BYTES
                      else decode_step_bytes(shape, fmt))
    except BackendError:  # a format with neither a GGUF plan nor a byte count: no share rather than a guess
        return "—"
    return f"{tokens_per_s / (bandwidth_gb_s * 1e9 / step_bytes):.0%}"


def table(configs: pd.DataFrame, model: str, gpu_name: str, bandwidth_gb_s: float) -> str:
    rows = configs[(configs["model"] == model) & (configs["workload"] == DECODE) & (configs["gpu_count"] == 1)
                   & (configs["gpu_name"] == gpu_name) & configs["batch_size"].isin(BATCHES)].copy()
    rows["engine"] = rows.apply(engine, axis=1)
    out = []
    # one line per sweep too: the same engine and format measured on two days (two hosts) stay two lines
    for (name, quant, experiment), group in rows.groupby(["engine", "quantization", "experiment"], sort=True):
        by_batch = group.set_index("batch_size")
        # the project's own FP8 path is retired research (README, "The compiled pair"): never read as FP8 in general
        line: dict[str, object] = {"engine": name, "format": "FP8 (project, retired)" if quant == "FP8" else quant}
        for metric, column, fmt in (("J/token", "energy_per_token_j", "{:.3f}"), ("tok/s", "tokens_per_s", "{:.0f}"),
                                    ("TPOT ms", "tpot_p50_s", "{:.1f}")):
            for b in BATCHES:
                value = by_batch[column].get(b)
                scale = 1000 if column == "tpot_p50_s" else 1
                line[f"{metric} b{b}"] = fmt.format(value * scale) if value is not None and pd.notna(value) else "—"
        b1 = by_batch["tokens_per_s"].get(1)
        line["b1 roofline share"] = roofline_share(model, quant, b1, bandwidth_gb_s) if b1 is not None else "—"
        line["experiment"] = experiment  # the sweep, hence the host and day
        out.append(line)
    return markdown_table(pd.DataFrame(out))


def main() -> int:
    release = Path(sys.argv[1])
    models = sys.argv[2:] or ["llama-3.1-8b", "qwen2.5-7b"]
    configs = pd.read_parquet(release / "data" / "configurations.parquet")
    single = configs[configs["model"].isin(models) & (configs["gpu_count"] == 1)]
    # H200 first (the card most rows ran on), then any other card the release holds
    gpus = sorted(single["gpu_name"].dropna().unique(), key=lambda g: (g != "NVIDIA H200", g))
    for gpu_name in gpus:
        bandwidth_gb_s = hardware_for_row(gpu_name, 1, None).memory_bandwidth_gb_s
        for model in models:
            if not ((single["model"] == model) & (single["gpu_name"] == gpu_name)).any():
                continue
            print(f"#### {model}, one {gpu_name}, {DECODE} (roofline: {bandwidth_gb_s:.0f} GB/s)\n")
            print(table(configs, model, gpu_name, bandwidth_gb_s))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
