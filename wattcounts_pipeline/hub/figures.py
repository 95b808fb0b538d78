"""The release's figure: J/token against batch size, so readers see the batching trade-off at a glance."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # headless: releases are built on servers and in CI

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D

logger = logging.getLogger(__name__)

PANEL = ["framework", "mode", "quantization", "hardware_id"]  # one panel per engine setup and machine
SERIES = ["model", *PANEL, "workload"]  # never average across these
TAB20 = cast(ListedColormap, matplotlib.colormaps["tab20"])  # a fixed list of 20 colours, one per model
LINE_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 3)), "P")]


def compile_mode(engine_args_json: str | None) -> str:
    """eager, compiled (transformers' static-cache `generate`), compiled-graphs (backends/static_decode.py,
    torch.compile) or cuda-graphs (the same loop, eager kernels recorded: `compile: capture`)."""
    mode = json.loads(engine_args_json or "{}").get("compile", False)
    return ("eager" if not mode else "compiled" if mode is True else "cuda-graphs" if mode == "capture"
            else f"compiled-{mode}")


def energy_per_token_figure(configurations: pd.DataFrame, path: Path, columns: int = 3) -> Path:
    """Write a PNG of gross J/token vs batch size (log-log) as small multiples: a panel per framework,
    compile path, precision and machine, a colour per model (the same in every panel), a line style per
    workload. Three hundred configurations on one axis are unreadable; on shared axes the panels still
    compare at a glance."""
    data = configurations[configurations["energy_per_token_j"] > 0]
    data = data.assign(mode=data["engine_args_json"].map(compile_mode))
    panels = list(data.groupby(PANEL, sort=True).groups) or [("no configurations with energy > 0",)]
    ncols = min(columns, len(panels))
    nrows = -(-len(panels) // ncols)
    height_in = 3.4 * nrows + 1.2
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, height_in), dpi=100, squeeze=False,
                             sharex=True, sharey=True)
    legend_rows = 0
    try:
        colours: dict[str, Any] = dict(zip(sorted(data["model"].unique()), itertools.cycle(cast(Sequence[Any], TAB20.colors))))
        styles = dict(zip(sorted(data["workload"].unique()), itertools.cycle(LINE_STYLES)))
        for ax, panel in zip(axes.flat, panels):
            ax.set_title(" · ".join(map(str, panel)), fontsize="small")
            ax.grid(True, which="both", alpha=0.3)
        if data.empty:
            axes.flat[0].text(0.5, 0.5, panels[0][0], ha="center", va="center", transform=axes.flat[0].transAxes)
        for key, group in data.groupby(SERIES, sort=True):
            ax = axes.flat[panels.index(tuple(key[1:-1]))]
            curve = group.groupby("batch_size", sort=True)["energy_per_token_j"].mean()
            linestyle, marker = styles[key[-1]]
            ax.plot(curve.index, curve.values, marker=marker, markersize=4, linestyle=linestyle,
                    color=colours[key[0]])
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        if not data.empty:
            ax = axes.flat[0]
            ax.set_yscale("log")
            ax.set_xscale("log", base=2)  # batch sizes are usually powers of two
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
            handles = [Line2D([], [], color=c, marker="o", label=m) for m, c in colours.items()]
            if len(styles) > 1:
                handles += [Line2D([], [], color="grey", linestyle=ls, marker=mk, label=w)
                            for w, (ls, mk) in styles.items()]
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize="small",
                       frameon=False)
            legend_rows = -(-len(handles) // 6)
        for ax in axes[-1]:
            ax.set_xlabel("batch size (requests)")
        for ax in axes[:, 0]:
            ax.set_ylabel("J/token (gross)")
        fig.suptitle("Energy per output token vs batch size")
        fig.tight_layout(rect=(0, (0.1 + 0.22 * legend_rows) / height_in, 1, 1))  # room for the legend
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
