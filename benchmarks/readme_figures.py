"""Regenerate the README's headline tables and figures from a dataset release (one command).

Usage: python benchmarks/readme_figures.py RELEASE_DIR [--out docs]          (the default release)
       python benchmarks/readme_figures.py LADDER_RELEASE_DIR --ladder      (experiments/ladder.yaml)
Writes docs/energy_per_token_decode.png + docs/headline.md, or docs/quality_vs_energy.png + docs/ladder.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.hub.card import markdown_table
from wattcounts_pipeline.hub.figures import energy_per_token_figure, pareto_front, quality_energy_figure

DECODE = "decode-128-256"


def headline(configs: pd.DataFrame) -> str:
    gpu = configs[configs["gpu_count"] > 0]
    decode = gpu[gpu["workload"] == DECODE].copy()
    decode["mode"] = decode["engine_args_json"].str.contains('"compile": true').map({True: "compiled", False: "eager"})
    pivot = decode.pivot_table(index=["model", "quantization", "mode"], columns="batch_size",
                               values="energy_per_token_j", aggfunc="mean")
    pivot.columns = [f"J/token b{c}" for c in pivot.columns]
    speed = decode.pivot_table(index=["model", "quantization", "mode"], columns="batch_size",
                               values="tokens_per_s", aggfunc="mean")
    speed.columns = [f"tok/s b{c}" for c in speed.columns]
    table = pivot.join(speed).reset_index().round(4)
    table = table.astype(object).where(table.notna(), "—")
    cpu = configs[configs["gpu_count"] == 0][["model", "framework", "quantization", "batch_size",
                                             "energy_per_token_j", "tokens_per_s", "energy_method",
                                             "quality_acc_mean"]].round(4)
    hardware = ", ".join(sorted(gpu["gpu_name"].dropna().unique()))
    return (f"### {hardware}: transformers, {DECODE} (128 prompt / 256 generated tokens), gross J/token\n\n"
            f"{markdown_table(table)}\n\n### CPU (this project's default experiment)\n\n{markdown_table(cpu)}\n")


def ladder(configs: pd.DataFrame, quality: pd.DataFrame) -> str:
    """One row per rung: energy and speed on the workload, accuracy per task, Pareto membership."""
    acc = quality[quality["metric"] == "acc"].pivot_table(index=["quantization", "framework"], columns="task",
                                                          values="value")
    table = configs.set_index(["quantization", "framework"])[
        ["energy_per_token_j", "energy_per_token_j_ci95_low", "energy_per_token_j_ci95_high", "tokens_per_s",
         "quality_acc_mean"]].join(acc).reset_index()
    table["pareto"] = pareto_front(table["energy_per_token_j"], table["quality_acc_mean"]).map({True: "yes", False: ""})
    table = table.sort_values("energy_per_token_j").round(4)
    return markdown_table(table) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("release", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--ladder", action="store_true", help="the quantization ladder's table and plot")
    args = parser.parse_args()
    configs = pd.read_parquet(args.release / "data" / "configurations.parquet")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.ladder:
        quality_energy_figure(configs, args.out / "quality_vs_energy.png")
        (args.out / "ladder.md").write_text(ladder(configs, pd.read_parquet(args.release / "data" / "quality.parquet")))
        print((args.out / "ladder.md").read_text())
        return
    decode_gpu = configs[(configs["workload"] == DECODE) & (configs["gpu_count"] > 0)]
    energy_per_token_figure(decode_gpu, args.out / "energy_per_token_decode.png")
    (args.out / "headline.md").write_text(headline(configs))
    print((args.out / "headline.md").read_text())


if __name__ == "__main__":
    main()
