"""Regenerate the README's headline tables and figures from a dataset release (one command).

Usage: python benchmarks/readme_figures.py RELEASE_DIR [--out docs]          (the default release)
       python benchmarks/readme_figures.py LADDER_RELEASE_DIR --ladder      (experiments/ladder.yaml)
       python benchmarks/readme_figures.py --ladder-table docs/ladder.md   (the ladder's plot, no release at hand)
Writes docs/energy_per_token_decode.png + docs/headline.md (with the one-GPU vs several-GPU vs MoE table),
or docs/quality_vs_energy.png + docs/ladder.md, or (--ladder-table) docs/quality_vs_energy.png alone, redrawn
from the ladder table this script wrote: its energy, energy interval and accuracies as they are; the accuracy's
interval as the pipeline computes it for measured quality (lm-eval's closed-form stderr of each task's accuracy
over --questions questions, combined over the tasks as `aggregate` does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.stats import Z95
from wattcounts_pipeline.hub.card import markdown_table
from wattcounts_pipeline.hub.figures import compile_mode, energy_per_token_figure, pareto_front, quality_energy_figure

DECODE = "decode-128-256"
SCALE_MODELS = ("llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b")  # dense 8B, dense 70B, MoE 47B (13B active)


def _mode(configs: pd.DataFrame) -> pd.Series:
    return configs["engine_args_json"].map(compile_mode)


def _gpus(configs: pd.DataFrame) -> pd.Series:
    """"1", or "4 pipeline" / "2 tensor" where a model spans several GPUs."""
    parallel = configs["parallelism"].fillna("none")
    count = configs["gpu_count"].astype(str)
    return count.where(parallel == "none", count + " " + parallel)


def scale(configs: pd.DataFrame) -> str:
    """The same workloads on one GPU (dense 8B), split over several (dense 70B) and on a MoE, bf16 eager."""
    picked = configs[configs["model"].isin(SCALE_MODELS) & (configs["gpu_count"] > 0)
                     & (configs["quantization"] == "BF16") & (_mode(configs) == "eager")
                     & configs["batch_size"].isin([1, 8, 32])].copy()
    picked["GPUs"] = _gpus(picked)
    picked["per-GPU J/token"] = picked["energy_per_token_j_by_gpu"].map(
        lambda v: " / ".join(f"{x:.2f}" for x in json.loads(v)) if isinstance(v, str) and v.count(",") else "")
    picked["TPOT p50 ms"] = picked["tpot_p50_s"] * 1e3
    picked["model"] = pd.Categorical(picked["model"], SCALE_MODELS, ordered=True)
    table = picked.sort_values(["workload", "batch_size", "model"])[
        ["workload", "batch_size", "model", "GPUs", "gpu_name", "energy_per_token_j", "energy_per_token_net_j",
         "tokens_per_s", "TPOT p50 ms", "e2e_p50_s", "per-GPU J/token"]].round(3)
    return markdown_table(table.astype(object).where(table.notna(), "—"))


def headline(configs: pd.DataFrame) -> str:
    gpu = configs[configs["gpu_count"] > 0]
    decode = gpu[gpu["workload"] == DECODE].copy()
    decode["mode"] = _mode(decode)
    decode["GPUs"] = _gpus(decode)
    index = ["model", "GPUs", "quantization", "mode"]
    pivot = decode.pivot_table(index=index, columns="batch_size", values="energy_per_token_j", aggfunc="mean")
    pivot.columns = [f"J/token b{c}" for c in pivot.columns]
    speed = decode.pivot_table(index=index, columns="batch_size", values="tokens_per_s", aggfunc="mean")
    speed.columns = [f"tok/s b{c}" for c in speed.columns]
    table = pivot.join(speed).reset_index().round(4)
    table = table.astype(object).where(table.notna(), "—")
    cpu = configs[configs["gpu_count"] == 0][["model", "framework", "quantization", "batch_size",
                                             "energy_per_token_j", "tokens_per_s", "energy_method",
                                             "quality_acc_mean"]].round(4)
    hardware = ", ".join(sorted(gpu["gpu_name"].dropna().unique()))
    return (f"### {hardware}: transformers, {DECODE} (128 prompt / 256 generated tokens), gross J/token\n\n"
            f"{markdown_table(table)}\n\n### One GPU or several: dense 8B, dense 70B split by layer, MoE "
            f"(bf16 eager, same workloads)\n\n{scale(configs)}\n\n"
            f"### CPU (this project's default experiment)\n\n{markdown_table(cpu)}\n")


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


def ladder_rows(table_md: str, questions: int) -> pd.DataFrame:
    """The configuration rows behind a ladder table (`ladder`'s output), for its plot: quality measured, its 95%
    interval from the per-task accuracies (`wc_*` columns) as `aggregate._measured_quality` builds it."""
    lines = [line.strip().strip("|").split("|") for line in table_md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0]]
    rows = pd.DataFrame([[c.strip() for c in line] for line in lines[1:]], columns=header)  # no "|---|" line
    tasks = [c for c in header if c.startswith("wc_")]
    numeric = ["energy_per_token_j", "energy_per_token_j_ci95_low", "energy_per_token_j_ci95_high",
               "quality_acc_mean", *tasks]
    rows[numeric] = rows[numeric].apply(pd.to_numeric)
    stderr = np.sqrt(rows[tasks] * (1 - rows[tasks]) / (questions - 1))  # lm-eval's closed form for a mean of 0/1
    half = Z95 * np.sqrt((stderr**2).sum(axis=1)) / len(tasks)
    return rows.assign(quality_source="measured", quality_acc_ci95_low=rows["quality_acc_mean"] - half,
                       quality_acc_ci95_high=rows["quality_acc_mean"] + half, quality_tasks=",".join(tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("release", type=Path, nargs="?")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--ladder", action="store_true", help="the quantization ladder's table and plot")
    parser.add_argument("--ladder-table", type=Path, default=None,
                        help="redraw the ladder's plot from this table (docs/ladder.md) instead of a release")
    parser.add_argument("--questions", type=int, default=50, help="questions per task behind --ladder-table")
    args = parser.parse_args()
    if args.ladder_table is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = ladder_rows(args.ladder_table.read_text(), args.questions)
        print(quality_energy_figure(rows, args.out / "quality_vs_energy.png"))
        return
    if args.release is None:
        parser.error("RELEASE_DIR is needed (or --ladder-table)")
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
