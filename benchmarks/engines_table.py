"""The README's "one model, one H200, every engine and format" table, from a dataset release.

Usage: python benchmarks/engines_table.py RELEASE_DIR [MODEL ...]     (default: llama-3.1-8b qwen2.5-7b)
RELEASE_DIR holds data/configurations.parquet (`benchmarks/recorded_release.py OUT` builds one from the
recorded GPU sweeps alone). Prints one markdown table per model: each engine (llama.cpp in-process,
llama-server, transformers by compile path) and weight format on one GPU, decode-128-256, gross J/token
(mean), client-side tokens/s and TPOT p50 at batch 1, 8 and 32, and batch-1 tokens/s as a share of the
memory roofline: the weight bytes a decode step reads (`gguf_random.decode_step_bytes`: every tensor but
the untied input-embedding table, of which one row is gathered) over the card's catalog bandwidth.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.backends.gguf_random import Shape, decode_step_bytes
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.hub.card import markdown_table
from wattcounts_pipeline.hub.figures import compile_mode
from wattcounts_pipeline.model.catalog import hardware_catalog

DECODE = "decode-128-256"
BATCHES = (1, 8, 32)
CONFIGS = Path("models") / "configs"
# Weight formats whose decode bytes a GGUF plan gives: llama.cpp's types, and 16-bit transformers weights (the
# same tensors as F16). The project's FP8 path keeps some tensors in bf16: no roofline share for it.
PLAN_FORMAT = {"BF16": "F16", "FP16": "F16"}


def engine(row: pd.Series) -> str:
    if row["framework"] == "llamacpp":
        return "llama.cpp in-process"
    if row["framework"] == "llamacpp-server":
        return "llama-server"
    return f"{row['framework']} {compile_mode(row['engine_args_json'])}"


def roofline_share(model: str, quantization: str, tokens_per_s: float, bandwidth_gb_s: float) -> str:
    fmt = PLAN_FORMAT.get(quantization, quantization)
    try:
        step_bytes = decode_step_bytes(Shape.from_config(CONFIGS / model), fmt)
    except BackendError:  # a format without a GGUF plan (FP8): no share rather than a guess
        return "—"
    return f"{tokens_per_s / (bandwidth_gb_s * 1e9 / step_bytes):.0%}"


def table(configs: pd.DataFrame, model: str, bandwidth_gb_s: float) -> str:
    rows = configs[(configs["model"] == model) & (configs["workload"] == DECODE) & (configs["gpu_count"] == 1)
                   & configs["batch_size"].isin(BATCHES)].copy()
    rows["engine"] = rows.apply(engine, axis=1)
    out = []
    for (name, quant), group in rows.groupby(["engine", "quantization"], sort=True):
        by_batch = group.set_index("batch_size")
        line: dict[str, object] = {"engine": name, "format": quant}
        for metric, column, fmt in (("J/token", "energy_per_token_j", "{:.3f}"), ("tok/s", "tokens_per_s", "{:.0f}"),
                                    ("TPOT ms", "tpot_p50_s", "{:.1f}")):
            for b in BATCHES:
                value = by_batch[column].get(b)
                scale = 1000 if column == "tpot_p50_s" else 1
                line[f"{metric} b{b}"] = fmt.format(value * scale) if value is not None and pd.notna(value) else "—"
        b1 = by_batch["tokens_per_s"].get(1)
        line["b1 roofline share"] = roofline_share(model, quant, b1, bandwidth_gb_s) if b1 is not None else "—"
        line["experiment"] = ", ".join(sorted(group["experiment"].unique()))  # the sweep, hence the host and day
        out.append(line)
    return markdown_table(pd.DataFrame(out))


def main() -> int:
    release = Path(sys.argv[1])
    models = sys.argv[2:] or ["llama-3.1-8b", "qwen2.5-7b"]
    configs = pd.read_parquet(release / "data" / "configurations.parquet")
    h200 = hardware_catalog()["H200"]
    gpus = sorted(configs.loc[configs["model"].isin(models) & (configs["gpu_count"] == 1), "gpu_name"].unique())
    if gpus != ["NVIDIA H200"]:
        raise SystemExit(f"{release}: expected rows of one NVIDIA H200 only, found {gpus}")
    for model in models:
        print(f"#### {model}, one NVIDIA H200, {DECODE} (roofline: {h200.memory_bandwidth_gb_s:.0f} GB/s)\n")
        print(table(configs, model, h200.memory_bandwidth_gb_s))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
