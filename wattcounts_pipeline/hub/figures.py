"""The release's figure: J/token against batch size, so readers see the batching trade-off at a glance."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # headless: releases are built on servers and in CI

import matplotlib.pyplot as plt
import pandas as pd

logger = logging.getLogger(__name__)

SERIES = ["model", "framework", "mode", "quantization", "workload", "hardware_id"]  # never average across these
LINE_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 3)), "P")]


def compile_mode(engine_args_json: str | None) -> str:
    """eager, compiled (transformers' static-cache `generate`), compiled-graphs (backends/static_decode.py,
    torch.compile) or cuda-graphs (the same loop, eager kernels recorded: `compile: capture`)."""
    mode = json.loads(engine_args_json or "{}").get("compile", False)
    return ("eager" if not mode else "compiled" if mode is True else "cuda-graphs" if mode == "capture"
            else f"compiled-{mode}")


def energy_per_token_figure(configurations: pd.DataFrame, path: Path) -> Path:
    """Write a PNG of gross J/token vs batch size (log-log), one line per model/framework/quantization/
    workload/machine: a colour per model, a line style per everything else (precision, compile path, GPUs),
    so two dozen lines stay tellable apart."""
    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=100)
    try:
        data = configurations[configurations["energy_per_token_j"] > 0]
        data = data.assign(mode=data["engine_args_json"].map(compile_mode))
        colours = dict(zip(sorted(data["model"].unique()), itertools.cycle(plt.get_cmap("tab20").colors)))
        variants = sorted({tuple(k[1:]) for k in data.groupby(SERIES, sort=True).groups})
        styles = dict(zip(variants, itertools.cycle(LINE_STYLES)))
        for key, group in data.groupby(SERIES, sort=True):
            curve = group.groupby("batch_size", sort=True)["energy_per_token_j"].mean()
            linestyle, marker = styles[tuple(key[1:])]
            ax.plot(curve.index, curve.values, marker=marker, linestyle=linestyle, color=colours[key[0]],
                    label=" · ".join(map(str, key)))
        if data.empty:
            ax.text(0.5, 0.5, "no configurations with energy > 0", ha="center", va="center",
                    transform=ax.transAxes)
        else:
            ax.set_yscale("log")
            ax.set_xscale("log", base=2)  # batch sizes are usually powers of two
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.set_xlabel("batch size (requests)")
        ax.set_ylabel("energy per output token (J/token, gross)")
        ax.set_title("Energy per output token vs batch size")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    logger.debug("wrote %s", path)
    return path


def pareto_front(energy: pd.Series, quality: pd.Series) -> pd.Series:
    """True for rows no other row beats on both lower energy and higher quality."""
    front = pd.Series(False, index=energy.index)
    for i in energy.index:
        better = (energy <= energy[i]) & (quality >= quality[i]) & ((energy < energy[i]) | (quality > quality[i]))
        front[i] = not better.any()
    return front


def quality_energy_figure(configurations: pd.DataFrame, path: Path) -> Path | None:
    """Quality against J/token for the configurations that carry quality, Pareto front marked; None if none do."""
    data = configurations.dropna(subset=["quality_acc_mean"])
    data = data[data["energy_per_token_j"] > 0]
    if data.empty:
        return None
    front = pareto_front(data["energy_per_token_j"], data["quality_acc_mean"])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        ax.scatter(data["energy_per_token_j"], data["quality_acc_mean"], color="tab:blue")
        for _, row in data.iterrows():
            ax.annotate(f"{row['quantization']} · {row['framework']}", (row["energy_per_token_j"], row["quality_acc_mean"]),
                        fontsize="x-small", xytext=(4, 3), textcoords="offset points")
        edge = data[front].sort_values("energy_per_token_j")
        ax.step(edge["energy_per_token_j"], edge["quality_acc_mean"], where="post", color="tab:red",
                label="Pareto front (less energy, more quality)")
        ax.set_xscale("log")
        ax.set_xlabel("energy per output token (J/token, gross)")
        ax.set_ylabel("mean accuracy over the multiple-choice tasks")
        ax.set_title("Quality against energy")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
