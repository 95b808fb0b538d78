"""The release's figures: J/token against batch size, so readers see the batching trade-off at a glance, and
quality against J/token with its Pareto front. Every point carries its 95% interval; colours are Okabe & Ito's
colour-blind-safe set, each paired with a marker; log ticks read as plain numbers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # headless: releases are built on servers and in CI

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from wattcounts_pipeline.model.plot import (
    OKABE_ITO,
    label_points,
    plain_number,
    readable_log_axis,
    series_style,
    stack_legends_below,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

PANEL = ["framework", "mode", "quantization", "hardware_id"]  # one panel per engine setup and machine
SERIES = ["model", *PANEL, "workload"]  # never average across these
LINE_STYLES: list[Any] = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3))]  # one per workload
# Quality's source, by colour and marker: measured here, published for the weights, or derived from both.
SOURCES = {"measured": (OKABE_ITO["blue"], "o"), "published": (OKABE_ITO["orange"], "s"),
           "derived": (OKABE_ITO["bluish green"], "^"), "unknown": ("0.45", "D")}
EDGE = "0.2"  # a dark rim on filled markers, so the palette's yellow shows on white
LABEL_ALL_UP_TO = 20  # points on the quality plot: each labelled up to this many, else the Pareto front's only


def compile_mode(engine_args_json: str | None) -> str:
    """eager, compiled (transformers' static-cache `generate`), compiled-graphs (backends/static_decode.py,
    torch.compile) or cuda-graphs (the same loop, eager kernels recorded: `compile: capture`)."""
    mode = json.loads(engine_args_json or "{}").get("compile", False)
    return ("eager" if not mode else "compiled" if mode is True else "cuda-graphs" if mode == "capture"
            else f"compiled-{mode}")


def _marker_look(colour: str, face: str) -> dict[str, Any]:
    """A filled marker with a thin dark rim (the palette's yellow shows on white), a hollow one rimmed in colour."""
    if face == colour:
        return {"markerfacecolor": face, "markeredgecolor": EDGE, "markeredgewidth": 0.4}
    return {"markerfacecolor": face, "markeredgecolor": colour, "markeredgewidth": 1.1}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    logger.debug("wrote %s", path)
    return path


def _interval(values: pd.Series, low: pd.Series | None, high: pd.Series | None) -> np.ndarray:
    """Error-bar lengths (2 × n, below and above `values`) from an interval's bounds; 0 where a bound is missing."""
    if low is None or high is None:
        return np.zeros((2, len(values)))
    below = values.to_numpy(dtype=float) - pd.to_numeric(low, errors="coerce").to_numpy(dtype=float)
    above = pd.to_numeric(high, errors="coerce").to_numpy(dtype=float) - values.to_numpy(dtype=float)
    return np.nan_to_num(np.clip(np.vstack([below, above]), 0.0, None))


def _column(data: pd.DataFrame, name: str) -> pd.Series | None:
    return data.get(name, None)


def energy_per_token_axes(configurations: pd.DataFrame, columns: int = 3) -> Figure:
    """The figure `energy_per_token_figure` writes (see there); the Agg canvas is attached, nothing is saved."""
    data = configurations[configurations["energy_per_token_j"] > 0]
    data = data.assign(mode=data["engine_args_json"].map(compile_mode),
                       **{c: data.get(c, np.nan) for c in ("energy_per_token_j_ci95_low", "energy_per_token_j_ci95_high")})
    panels = list(data.groupby(PANEL, sort=True).groups) or [("no configurations with energy > 0",)]
    ncols = min(columns, len(panels))
    nrows = -(-len(panels) // ncols)
    height_in = 3.4 * nrows + 0.6
    fig = Figure(figsize=(4.6 * ncols, height_in), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    models = sorted(data["model"].unique())
    styles = {model: series_style(i) for i, model in enumerate(models)}  # no two models alike in colour and marker
    workloads = {w: LINE_STYLES[i % len(LINE_STYLES)] for i, w in enumerate(sorted(data["workload"].unique()))}
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(" · ".join(map(str, panel)), fontsize="small")
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
    if data.empty:
        axes.flat[0].text(0.5, 0.5, panels[0][0], ha="center", va="center", transform=axes.flat[0].transAxes)
    for key, group in data.groupby(SERIES, sort=True):
        ax = axes.flat[panels.index(tuple(key[1:-1]))]
        # Several configurations at one batch size (a repeated sweep): their mean, and an interval from the lowest
        # low to the highest high of theirs.
        points = group.groupby("batch_size", sort=True).agg(
            energy=("energy_per_token_j", "mean"), low=("energy_per_token_j_ci95_low", "min"),
            high=("energy_per_token_j_ci95_high", "max"))
        colour, marker, face = styles[key[0]]
        ax.errorbar(points.index, points["energy"], yerr=_interval(points["energy"], points["low"], points["high"]),
                    marker=marker, markersize=4.5, **_marker_look(colour, face), linestyle=workloads[key[-1]], linewidth=1.3, color=colour, elinewidth=0.9, capsize=2.5, zorder=2)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    last_row = [max(r for r in range(nrows) if r * ncols + c < len(panels)) for c in range(ncols)]
    legends = []
    if not data.empty:
        ax = axes.flat[0]
        ax.set_yscale("log")
        ax.set_xscale("log", base=2)  # batch sizes are usually powers of two
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain_number))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        readable_log_axis(ax.yaxis, *ax.get_ylim())  # the panels share it
        handles = [Line2D([], [], color=c, marker=m, markersize=5, **_marker_look(c, f), label=model)
                   for model, (c, m, f) in styles.items()]
        if len(workloads) > 1:
            handles += [Line2D([], [], color="0.3", linestyle=ls, label=w) for w, ls in workloads.items()]
        handles.append(Line2D([], [], color="0.3", marker="|", markersize=9, linestyle="none",
                              label="bars: 95% interval of the mean over repeats"))
        legends.append(fig.legend(handles=handles, loc="lower left", ncol=min(len(handles), 4 if ncols < 3 else 6),
                                  fontsize="small", frameon=False))
    for column, row in enumerate(last_row):  # under the last panel of each column, hidden panels below or not
        axes[row, column].xaxis.set_tick_params(labelbottom=True)
        axes[row, column].set_xlabel("batch size (requests)")
    for ax in axes[:, 0]:
        ax.set_ylabel("J/token (gross)")
    stack_legends_below(fig, legends, height_in, title="Energy per output token vs batch size")
    return fig


def energy_per_token_figure(configurations: pd.DataFrame, path: Path, columns: int = 3) -> Path:
    """Write a PNG of gross J/token vs batch size (log-log) as small multiples: a panel per framework,
    compile path, precision and machine, a colour and marker per model (the same in every panel), a line style
    per workload, the 95% interval of each point as a band and bars. Three hundred configurations on one axis are
    unreadable; on shared axes the panels still compare at a glance."""
    return _save(energy_per_token_axes(configurations, columns), path)


def pareto_front(energy: pd.Series, quality: pd.Series) -> pd.Series:
    """True for rows no other row beats on both lower energy and higher quality."""
    front = pd.Series(False, index=energy.index)
    for i in energy.index:
        better = (energy <= energy[i]) & (quality >= quality[i]) & ((energy < energy[i]) | (quality > quality[i]))
        front[i] = not better.any()
    return front


def _point_names(data: pd.DataFrame) -> list[str]:
    """A label per row from what tells the rows apart: model, quantization, framework, compile path, machine,
    workload and batch size, each only where the rows differ in it (quantization and framework at least)."""
    frame = data.assign(mode=data["engine_args_json"].map(compile_mode)) if "engine_args_json" in data else data
    shown = [c for c in ("model", "quantization", "framework", "mode", "hardware_id", "workload", "batch_size")
             if c in frame and frame[c].nunique() > 1] or [c for c in ("quantization", "framework") if c in frame]
    return [" · ".join(f"b{v}" if c == "batch_size" else str(v) for c, v in zip(shown, row))
            for row in frame[shown].itertuples(index=False)]


def quality_energy_axes(configurations: pd.DataFrame) -> Figure | None:
    """The figure `quality_energy_figure` writes (see there), or None when no configuration carries quality."""
    data = configurations.dropna(subset=["quality_acc_mean"])
    data = data[data["energy_per_token_j"] > 0]
    if data.empty:
        return None
    data = data.sort_values(["energy_per_token_j", "quality_acc_mean"], kind="stable").reset_index(drop=True)
    front = pareto_front(data["energy_per_token_j"], data["quality_acc_mean"])
    source = (data["quality_source"] if "quality_source" in data else pd.Series(None, index=data.index))
    source = source.where(source.isin(list(SOURCES)), "unknown").fillna("unknown")
    height_in = 5.0
    fig = Figure(figsize=(8.5, height_in), dpi=100)
    FigureCanvasAgg(fig)
    ax: Axes = fig.add_subplot()
    xerr = _interval(data["energy_per_token_j"], _column(data, "energy_per_token_j_ci95_low"),
                     _column(data, "energy_per_token_j_ci95_high"))
    yerr = _interval(data["quality_acc_mean"], _column(data, "quality_acc_ci95_low"),
                     _column(data, "quality_acc_ci95_high"))
    for name, (colour, marker) in SOURCES.items():
        mask = (source == name).to_numpy()
        if mask.any():
            ax.errorbar(data["energy_per_token_j"][mask], data["quality_acc_mean"][mask], xerr=xerr[:, mask],
                        yerr=yerr[:, mask], fmt=marker, color=colour, markersize=6, elinewidth=0.9, capsize=2.5,
                        alpha=0.9, zorder=3, label=f"quality {name} ({int(mask.sum())})")
    edge = data[front]
    (step,) = ax.step(edge["energy_per_token_j"], edge["quality_acc_mean"], where="post",
                      color=OKABE_ITO["vermillion"], linewidth=1.4, zorder=2)
    (rings,) = ax.plot(edge["energy_per_token_j"], edge["quality_acc_mean"], "o", markersize=11,
                       markerfacecolor="none", markeredgecolor=OKABE_ITO["vermillion"], markeredgewidth=1.4, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("energy per output token (J/token, gross)")
    ax.set_ylabel("mean accuracy over the multiple-choice tasks")
    ax.set_title("Quality against energy (bars: 95% intervals)")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    readable_log_axis(ax.xaxis, *ax.get_xlim())
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain_number))
    handles: list[Any] = list(ax.get_legend_handles_labels()[0])
    labels = ax.get_legend_handles_labels()[1]
    handles.append((step, rings))  # drawn one over the other
    labels.append("Pareto front (less energy, more quality)")
    legend = fig.legend(handles, labels, loc="lower left", ncol=min(len(handles), 3), fontsize="small",
                        frameon=False)
    shown = data if len(data) <= LABEL_ALL_UP_TO else data[front]
    order = pd.concat([shown[front.loc[shown.index]], shown[~front.loc[shown.index]]])
    label_points(ax, order["energy_per_token_j"].tolist(), order["quality_acc_mean"].tolist(),
                 _point_names(order), [legend], height_in,
                 obstacles_xy=list(zip(data["energy_per_token_j"], data["quality_acc_mean"])), marker_pt=6.0,
                 key_title="numbered points" if len(shown) == len(data) else "Pareto front, numbered")
    return fig


def quality_energy_figure(configurations: pd.DataFrame, path: Path) -> Path | None:
    """Quality against J/token for the configurations that carry quality, Pareto front marked, both intervals as
    error bars, the source of the quality (measured, published, derived) by colour and marker; every point labelled
    when there are few, the front's otherwise (numbered with a key below when labels do not fit). None if no
    configuration carries quality."""
    fig = quality_energy_axes(configurations)
    return None if fig is None else _save(fig, path)


def load_curve_name(row: pd.Series) -> str:
    """A serving sweep's legend label: what was served, by which server, under which workload and load."""
    return (f"{row['model']} {row['quantization']} · {row['server']} ×{row['slots']} · {row['workload']} "
            f"({row['load_mode']} loop) · {row['hardware_id']}")


def load_curve_axes(load_points: pd.DataFrame) -> Figure:
    """The figure `load_curve_figure` writes (see there); the Agg canvas is attached, nothing is saved."""
    fig = Figure(figsize=(10.0, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    energy_ax, tpot_ax = fig.subplots(1, 2)
    sweeps = sorted(load_points["sweep_id"].unique()) if not load_points.empty else []
    for ax in (energy_ax, tpot_ax):
        ax.grid(True, alpha=0.35)
        ax.set_xlabel("achieved request rate (requests/s)")
    energy_ax.set_ylabel("J/request (gross, whole load interval)")
    tpot_ax.set_ylabel("p90 TPOT (s)")
    if not sweeps:
        energy_ax.text(0.5, 0.5, "no load points", ha="center", va="center", transform=energy_ax.transAxes)
    handles = []
    slo_levels: set[float] = set()
    for i, sweep in enumerate(sweeps):
        points = load_points[load_points["sweep_id"] == sweep].sort_values("point_index")
        colour, marker, face = series_style(i)
        look = {"marker": marker, "markersize": 5, **_marker_look(colour, face), "color": colour, "linewidth": 1.3}
        rate = points["achieved_rate_per_s"].to_numpy(float)
        energy_ax.plot(rate, points["energy_per_request_j"].to_numpy(float), **look)
        tpot_ax.plot(rate, pd.to_numeric(points["tpot_p90_s"], errors="coerce").to_numpy(float), **look)
        saturated = points[points["saturated"].astype(bool)]
        if not saturated.empty:  # the point where throughput stopped rising, ringed
            energy_ax.plot(saturated["achieved_rate_per_s"], saturated["energy_per_request_j"], linestyle="none",
                           marker="o", markersize=11, markerfacecolor="none", markeredgecolor=colour)
        slo_levels.update(float(v) for v in points["slo_tpot_s"].dropna().unique())
        handles.append(Line2D([], [], **look, label=load_curve_name(points.iloc[0])))
    for level in sorted(slo_levels):
        tpot_ax.axhline(level, color=OKABE_ITO["vermillion"], linestyle="--", linewidth=1.1)
    if slo_levels:
        handles.append(Line2D([], [], color=OKABE_ITO["vermillion"], linestyle="--",
                              label="TPOT SLO (p90 target)"))
    if load_points.get("saturated", pd.Series(dtype=bool)).astype(bool).any():
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                              markeredgecolor="0.3", label="saturated: throughput stopped rising"))
    legend = fig.legend(handles=handles, loc="lower left", ncol=1, fontsize="small", frameon=False)
    stack_legends_below(fig, [legend], 4.4, title="Serving load curves: energy per request and p90 TPOT vs rate")
    return fig


def load_curve_figure(load_points: pd.DataFrame, path: Path) -> Path:
    """Write a PNG of each serving sweep's curve: gross J/request (the whole load interval, idle gaps included)
    and p90 TPOT against the achieved request rate, one colour and marker per sweep, the TPOT SLO as a dashed
    line and the saturated point ringed."""
    return _save(load_curve_axes(load_points), path)
