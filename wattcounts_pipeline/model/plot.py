"""A picture of a recommendation's front (energy against latency), for the train asset's UI and for people; and the
pieces every figure of the project shares: a colour-blind-safe palette, plain-number log ticks and labels that do
not overlap. Matplotlib's Agg canvas only, never pyplot, so this is safe off the main thread."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.text import Annotation

    from wattcounts_pipeline.model.recommendation import Recommendation

# Okabe & Ito's colour-blind-safe palette (https://jfly.uni-koeln.de/color/), the yellow last: it is the faintest on
# white, so it is used only when more than seven series share a figure.
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "bluish green": "#009E73", "vermillion": "#D55E00",
             "reddish purple": "#CC79A7", "sky blue": "#56B4E9", "black": "#000000", "yellow": "#F0E442"}
PALETTE = list(OKABE_ITO.values())
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]  # 7 markers against 8 colours: (i % 8, i % 7) is unique for i < 56


def series_style(index: int) -> tuple[str, str, str]:
    """(colour, marker, marker face colour) of the `index`-th series: the first 56 (colour, marker) pairs are all
    different, so series stay apart by shape where colours repeat or cannot be told apart; and the second round of
    colours has hollow markers."""
    colour = PALETTE[index % len(PALETTE)]
    return colour, MARKERS[index % len(MARKERS)], colour if index // len(PALETTE) % 2 == 0 else "white"


def plain_number(value: float, _pos: int | None = None) -> str:
    """A tick label as a plain number with at most 3 significant digits: 0.05, 0.2, 1, 20 (never 2×10⁻¹ or 1e-05)."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else ""
    text = f"{value:.3g}"
    return np.format_float_positional(float(text), trim="-") if "e" in text else text


# Major tick sets within a decade, densest first; the densest whose closest pair of ticks is far enough apart wins.
_LOG_SUBS = [(1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 5, 6, 8), (1, 2, 3, 4, 5, 7), (1, 2, 3, 5), (1, 2, 5), (1, 3),
             (1,)]


def readable_log_axis(axis: Axis, low: float, high: float) -> None:
    """Major ticks on a log axis as dense as the axis' length allows (every digit, 1-2-3-5, 1-2-5, 1-3 or decades
    only), labelled as plain numbers; minor ticks unlabelled (matplotlib's default labels them as 4×10⁻¹)."""
    from matplotlib.axis import XAxis
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    horizontal = isinstance(axis, XAxis)
    fig = axis.axes.figure  # the figure itself: these plots have no subfigures
    length_px = axis.axes.bbox.width if horizontal else axis.axes.bbox.height
    decades = math.log10(high / low) if low > 0 and high > low else 1.0
    min_gap_px = (34.0 if horizontal else 16.0) * fig.dpi / 100.0  # labels side by side need more room
    for subs in _LOG_SUBS:
        gaps = np.diff(np.log10([*subs, 10]))
        if gaps.min() * length_px / decades >= min_gap_px:
            break
    axis.set_major_locator(LogLocator(base=10, subs=tuple(float(x) for x in subs), numticks=40))
    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10)), numticks=40))
    axis.set_minor_formatter(NullFormatter())


# Where a label may go around its point, nearest first: (dx, dy) direction, horizontal and vertical alignment.
_SIDES: list[tuple[tuple[float, float], Any, Any]] = [
    ((1.0, 0.0), "left", "center"), ((0.7, 0.7), "left", "bottom"), ((0.7, -0.7), "left", "top"),
    ((0.0, 1.0), "center", "bottom"), ((0.0, -1.0), "center", "top"), ((-1.0, 0.0), "right", "center"),
    ((-0.7, 0.7), "right", "bottom"), ((-0.7, -0.7), "right", "top")]
_RINGS_PT = [2.0, 7.0, 13.0, 21.0, 33.0, 49.0, 69.0]  # gaps from the marker's edge; beyond the second ring a thin
_LEADER_FROM_PT = 10.0  # leader line joins label and point


@dataclass
class PlacedLabels:
    """What `place_labels` drew: the label of each point (None where no free spot was found) and leader lines."""

    texts: list[Annotation | None]
    leaders: list[Line2D] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(t is None for t in self.texts)

    def remove(self) -> None:
        for artist in [*self.texts, *self.leaders]:
            if artist is not None:
                artist.remove()


def place_labels(ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                 obstacles_xy: Sequence[tuple[float, float]] = (), marker_pt: float | Sequence[float] = 5.0,
                 fontsize: float = 7.0, color: str = "black", max_gap_pt: float = 40.0,
                 weight: str = "normal") -> PlacedLabels:
    """Label the points (data coordinates) greedily, in the order given: each label takes the nearest spot around
    its point where it stays inside the axes, touches no earlier label or leader line and no labelled point
    (`marker_pt` half-size, one for all or one per point), and where its own leader line (far spots only) crosses
    no earlier label; a spot that also keeps clear of the other plotted points (`obstacles_xy`) first, one over them
    if there is none; none further than `max_gap_pt` from the marker's edge. A label with no free spot is left
    out (None). Call once the figure's layout is final: the spots are measured in pixels."""
    from matplotlib.lines import Line2D
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvases have one
    ax.set_xlim(ax.get_xlim())  # freeze the limits: the spots are measured against them
    ax.set_ylim(ax.get_ylim())
    px = fig.dpi / 72.0
    pad = 1.5 * px
    sizes = [float(marker_pt)] * len(xs) if isinstance(marker_pt, int | float) else [float(m) for m in marker_pt]
    half = 5.0 * px  # the unlabelled points
    frame = ax.get_window_extent(renderer)
    to_pixels = ax.transData.transform

    def around(points: Sequence[tuple[float, float]], halves: Sequence[float]) -> list[Bbox]:
        pixels = [to_pixels(p) for p in points]
        return [Bbox.from_extents(x - h, y - h, x + h, y + h) for (x, y), h in zip(pixels, halves)]

    labelled = around(list(zip(xs, ys)), [m * px for m in sizes])
    crowd = around(obstacles_xy, [half] * len(obstacles_xy))
    boxes: list[Bbox] = []  # the labels placed so far
    leaders: list[MplPath] = []
    texts: list[Annotation | None] = []
    drawn: list[Line2D] = []
    rings = [r for r in _RINGS_PT if r <= max_gap_pt]
    for x_data, y_data, label, size in zip(xs, ys, labels, sizes):
        x, y = to_pixels((x_data, y_data))
        own = size * px
        annotation = ax.annotate(label, (x_data, y_data), xytext=(0.0, 0.0), textcoords="offset points",
                                 fontsize=fontsize, color=color, zorder=5, weight=weight,
                                 bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75})
        spot = None
        for avoid in ([*labelled, *crowd, *boxes], [*labelled, *boxes]):  # then, if need be, over unlabelled points
            for ring in rings:
                radius = size + ring
                for (dx, dy), ha, va in _SIDES:
                    annotation.set_position((dx * radius, dy * radius))
                    annotation.set_horizontalalignment(ha)
                    annotation.set_verticalalignment(va)
                    box = annotation.get_window_extent(renderer)
                    if not (frame.x0 + pad <= box.x0 and box.x1 <= frame.x1 - pad and frame.y0 + pad <= box.y0
                            and box.y1 <= frame.y1 - pad):
                        continue
                    grown = box.padded(pad)
                    if any(grown.overlaps(other) for other in avoid):
                        continue
                    if any(leader.intersects_bbox(grown, filled=True) for leader in leaders):
                        continue
                    leader = None
                    if ring >= _LEADER_FROM_PT:
                        leader = MplPath(np.array([(x + dx * own, y + dy * own),
                                                   (x + dx * radius * px, y + dy * radius * px)]))
                        if any(leader.intersects_bbox(other, filled=True) for other in boxes):
                            continue
                    spot = (box, leader)
                    break
                if spot is not None:
                    break
            if spot is not None:
                break
        if spot is None:
            annotation.remove()
            texts.append(None)
            continue
        box, leader = spot
        boxes.append(box)
        texts.append(annotation)
        if leader is not None:
            leaders.append(leader)
            ends = ax.transData.inverted().transform(leader.vertices)
            drawn.append(ax.add_line(Line2D(ends[:, 0], ends[:, 1], color="0.45", linewidth=0.6, zorder=4)))
    return PlacedLabels(texts, drawn)


def stack_legends_below(fig: Figure, legends: Sequence[Legend], height_in: float, title: str | None = None) -> None:
    """Put figure legends under the plot, one above the other, make the figure taller by their height (so the plot
    keeps `height_in` inches) and lay the plot out above them, under the figure's `title` if given."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvases have one
    gap = 4.0 * fig.dpi / 72.0
    heights = [legend.get_window_extent(renderer).height for legend in legends]
    total = sum(heights) + gap * (len(legends) + 1)
    fig.set_size_inches(fig.get_figwidth(), height_in + total / fig.dpi)
    figure_px = fig.get_figheight() * fig.dpi
    bottom = gap
    for legend, height in zip(reversed(legends), reversed(heights)):
        legend.set_bbox_to_anchor((0.01, bottom / figure_px), transform=fig.transFigure)
        bottom += height + gap
    if title is not None:  # a fixed distance from the top, however tall the figure (matplotlib's default is 2%)
        fig.suptitle(title, y=1.0 - gap / figure_px, va="top")
    fig.tight_layout(rect=(0.0, bottom / figure_px, 1.0, 1.0))


def label_points(ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                 legends: Sequence[Legend], height_in: float, obstacles_xy: Sequence[tuple[float, float]] = (),
                 marker_pt: float | Sequence[float] = 5.0, key_title: str = "points",
                 fontsize: float = 7.0) -> PlacedLabels:
    """Label the points beside themselves where every label finds a free spot close to its point (so that no label
    can be read as another point's); otherwise number them and list the numbers under the plot (a key, below the
    `legends`). Lays the figure out either way (`stack_legends_below`). The result holds the labels or numbers
    drawn; a point with neither (no room even for its number) is counted in `missing` and said in the key's title."""
    from matplotlib.lines import Line2D

    fig = cast("Figure", ax.figure)
    stack_legends_below(fig, legends, height_in)
    placed = place_labels(ax, xs, ys, labels, obstacles_xy=obstacles_xy, fontsize=fontsize,
                          marker_pt=marker_pt, max_gap_pt=7.0)
    if not placed.missing:
        return placed
    placed.remove()
    handles = [Line2D([], [], linestyle="none") for _ in labels]
    columns = 1 if max(map(len, labels)) > 70 else 2 if len(labels) > 4 else 1
    key = fig.legend(handles, [f"{n}  {label}" for n, label in enumerate(labels, 1)], loc="lower left",
                     ncol=columns, fontsize=fontsize, handlelength=0, handletextpad=0, columnspacing=2.0,
                     frameon=False, title=key_title, title_fontsize=fontsize + 1, alignment="left")
    stack_legends_below(fig, [*legends, key], height_in)
    numbers = place_labels(ax, xs, ys, [str(n) for n in range(1, len(labels) + 1)], obstacles_xy=obstacles_xy,
                           marker_pt=marker_pt, fontsize=fontsize + 0.5, weight="bold", max_gap_pt=25.0)
    if numbers.missing:
        key.set_title(f"{key_title} ({numbers.missing} without a number on the plot: no room)")
    return numbers


def _describe(front: Any) -> list[str]:
    """A label per front row: architecture, quantization, framework, and the mode, GPU count and batch size where
    the front has more than one of them."""
    names = [f"{r['architecture']} {r['quantization']} {r['framework']}" for _, r in front.iterrows()]
    for column, show in (("mode", str), ("gpu_count", lambda v: f"×{v} GPU"), ("batch_size", lambda v: f"b{v}")):
        if column in front and front[column].nunique() > 1:
            names = [f"{n} {show(v)}" for n, v in zip(names, front[column])]
    return names


def front_figure(rec: Recommendation) -> Figure:
    """The figure `plot_front` writes: every candidate (grey), the Pareto front (blue, with the 95% interval of its
    energy as error bars, each point labelled, or numbered with a key when the labels do not fit) and the best pick
    (vermillion star), on plain-number log axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, no pyplot: safe off the main thread
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    every, front = rec.candidates, rec.front
    meets = every["meets_slo"] & every["meets_quality"]
    ax.scatter(every.loc[meets, "latency_s"], every.loc[meets, "energy_per_token_j"], s=14, color="0.6",
               label="meets SLO and quality", zorder=2)
    ax.scatter(every.loc[~meets, "latency_s"], every.loc[~meets, "energy_per_token_j"], s=14, marker="x",
               color="0.75", label="misses SLO or quality", zorder=2)
    energy = front["energy_per_token_j"].to_numpy(dtype=float)
    yerr = None
    if {"energy_per_token_j_low", "energy_per_token_j_high"} <= set(front.columns):
        below = energy - front["energy_per_token_j_low"].to_numpy(dtype=float)
        above = front["energy_per_token_j_high"].to_numpy(dtype=float) - energy
        yerr = np.nan_to_num(np.clip(np.vstack([below, above]), 0, None))
    ax.errorbar(front["latency_s"], energy, yerr=yerr, fmt="o", color=OKABE_ITO["blue"], elinewidth=1.0,
                capsize=3, markersize=6, zorder=3, label="Pareto front (bars: 95% interval of the energy)")
    if rec.best is not None:
        ax.plot([rec.best["latency_s"]], [rec.best["energy_per_token_j"]], "*", color=OKABE_ITO["vermillion"],
                markeredgecolor="black", markeredgewidth=0.5, markersize=16, zorder=4,
                label="best (min energy within SLO and quality)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("request latency (s): TTFT + (output tokens − 1) × TPOT")
    ax.set_ylabel("energy per output token (J, gross)")
    ax.set_title(f"{rec.scenario.name} on {rec.hardware}" + (" — see warnings" if rec.warnings else ""))
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    readable_log_axis(ax.xaxis, *ax.get_xlim())
    readable_log_axis(ax.yaxis, *ax.get_ylim())
    legend = fig.legend(*ax.get_legend_handles_labels(), loc="lower left", ncol=2, fontsize=8, frameon=False)
    sizes = [8.0 if i == 0 and rec.best is not None else 5.0 for i in range(len(front))]  # the best: front's first
    label_points(ax, front["latency_s"].tolist(), energy.tolist(), _describe(front), [legend], height_in=5.2,
                 obstacles_xy=list(zip(every["latency_s"], every["energy_per_token_j"])), marker_pt=sizes,
                 key_title=f"Pareto front, by {rec.best_by}")
    return fig


def plot_front(rec: Recommendation, path: Path | None = None) -> bytes:
    """PNG of every candidate, the Pareto front and the best pick; written to `path` too when given."""
    fig = front_figure(rec)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    png = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png
