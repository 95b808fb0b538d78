"""A picture of a recommendation's front (energy against latency), for the train asset's UI and for people."""

from __future__ import annotations

import io
from pathlib import Path

from wattcounts_pipeline.model.recommendation import Recommendation


def plot_front(rec: Recommendation, path: Path | None = None) -> bytes:
    """PNG of every candidate, the Pareto front and the best pick; written to `path` too when given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, no pyplot: safe off the main thread
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    every, front = rec.candidates, rec.front
    meets = every["meets_slo"] & every["meets_quality"]
    ax.scatter(every.loc[meets, "latency_s"], every.loc[meets, "energy_per_token_j"], s=14, color="0.6",
               label="meets SLO and quality")
    ax.scatter(every.loc[~meets, "latency_s"], every.loc[~meets, "energy_per_token_j"], s=14, marker="x",
               color="0.75", label="misses SLO or quality")
    ax.plot(front["latency_s"], front["energy_per_token_j"], "o", color="tab:blue", label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(f"{row['architecture']} {row['quantization']} {row['framework']}",
                    (row["latency_s"], row["energy_per_token_j"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    if rec.best is not None:
        ax.plot([rec.best["latency_s"]], [rec.best["energy_per_token_j"]], "*", color="tab:red", markersize=16,
                label="best (min energy within SLO and quality)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("request latency (s): TTFT + (output tokens − 1) × TPOT")
    ax.set_ylabel("energy per output token (J, gross)")
    ax.set_title(f"{rec.scenario.name} on {rec.hardware}" + (" — see warnings" if rec.warnings else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    png = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png
