"""The release's figure: J/token against batch size, so readers see the batching trade-off at a glance."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # headless: releases are built on servers and in CI

import matplotlib.pyplot as plt
import pandas as pd

logger = logging.getLogger(__name__)

SERIES = ["model", "framework", "quantization", "workload", "hardware_id"]  # never average across workloads


def energy_per_token_figure(configurations: pd.DataFrame, path: Path) -> Path:
    """Write a PNG of gross J/token vs batch size (log-log), one line per model/framework/quantization/
    workload/machine."""
    fig, ax = plt.subplots(figsize=(11, 6), dpi=100)
    try:
        data = configurations[configurations["energy_per_token_j"] > 0]
        for key, group in data.groupby(SERIES, sort=True):
            curve = group.groupby("batch_size", sort=True)["energy_per_token_j"].mean()
            ax.plot(curve.index, curve.values, marker="o", label=" · ".join(map(str, key)))
        if data.empty:
            ax.text(0.5, 0.5, "no configurations with energy > 0", ha="center", va="center",
                    transform=ax.transAxes)
        else:
            ax.set_yscale("log")
            ax.set_xscale("log", base=2)  # batch sizes are usually powers of two
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
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
