"""The figures a reader trusts (#24): every point with its 95% interval, colour-blind-safe colours paired with markers,
labels that do not overlap, log ticks that read as plain numbers. Checked on the matplotlib objects, not on pixels."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.text import Text

from tests.helpers import hubdata
from tests.helpers.model_fixtures import make_configurations
from wattcounts_pipeline.hub.figures import (
    energy_per_token_axes,
    energy_per_token_figure,
    pareto_front,
    quality_energy_axes,
    quality_energy_figure,
)
from wattcounts_pipeline.model.plot import (
    MARKERS,
    OKABE_ITO,
    PALETTE,
    front_figure,
    plain_number,
    plot_front,
    series_style,
)
from wattcounts_pipeline.model.predictor import fit_predictor
from wattcounts_pipeline.model.recommendation import Recommendation, recommend

UNREADABLE = ("×10", "10^", "$", "e-", "e+", "\\times")


def _tick_labels(fig: Figure) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for ax in fig.axes if ax.get_visible()
            for t in [*ax.get_xticklabels(which="both"), *ax.get_yticklabels(which="both")] if t.get_text()]


def _labels(fig: Figure) -> list[Text]:
    """The point labels (or numbers) of every axes."""
    return [t for ax in fig.axes for t in ax.texts if t.get_visible()]


def _assert_apart(fig: Figure, texts: list[Text]) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for (a, ta), (b, tb) in itertools.combinations(zip(boxes, texts), 2):
        assert not a.overlaps(b), f"{ta.get_text()!r} overlaps {tb.get_text()!r}"
    for ax in fig.axes:  # and inside the axes they label
        frame = ax.get_window_extent(renderer)
        for box, text in zip(boxes, texts):
            if text.axes is ax:
                assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def _errorbars(ax: Axes) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _bar_spans(container: ErrorbarContainer, which: int = 0) -> list[tuple[float, float]]:
    """(low, high) of each error bar in data coordinates (`which`: the first or second LineCollection)."""
    segments = container.lines[2][which].get_segments()
    return [(min(s[0][1], s[1][1]), max(s[0][1], s[1][1])) if s[0][0] == s[1][0] else
            (min(s[0][0], s[1][0]), max(s[0][0], s[1][0])) for s in segments]


# --- shared pieces -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [(0.05, "0.05"), (0.2, "0.2"), (0.30000000000000004, "0.3"), (1.0, "1"),
                                             (20.0, "20"), (1e-5, "0.00001"), (2e5, "200000"), (128.0, "128")])
def test_tick_numbers_are_plain(value: float, text: str) -> None:
    assert plain_number(value) == text


def test_palette_is_okabe_ito_with_a_marker_each() -> None:
    assert set(PALETTE) == {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
    styles = [series_style(i)[:2] for i in range(len(PALETTE) * len(MARKERS))]
    assert len(set(styles)) == len(styles)  # 56 series before any (colour, marker) pair comes back
    assert series_style(0)[2] == series_style(0)[0] and series_style(8)[2] == "white"  # second round: hollow


# --- J/token against batch size ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def many_models() -> pd.DataFrame:
    """Eleven models on one machine and setup (one panel), a twelfth on the CPU, each at three batch sizes."""
    return hubdata.configurations(models=tuple(f"model-{i:02d}" for i in range(12)))


def test_energy_panels_show_each_points_interval(many_models: pd.DataFrame) -> None:
    fig = energy_per_token_axes(many_models)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2
    for ax in panels:
        for container in _errorbars(ax):
            line = container.lines[0]
            assert line is not None
            xs, ys = (np.asarray(v, dtype=float) for v in line.get_data())
            spans = _bar_spans(container)
            assert len(spans) == len(xs)
            for x, y, (low, high) in zip(xs, ys, spans):
                row = many_models[(many_models["batch_size"] == x) & np.isclose(many_models["energy_per_token_j"], y)]
                assert len(row) == 1
                assert low == pytest.approx(row["energy_per_token_j_ci95_low"].iloc[0])
                assert high == pytest.approx(row["energy_per_token_j_ci95_high"].iloc[0])
    assert sum(len(_errorbars(ax)) for ax in panels) == 12


def test_energy_series_never_share_colour_and_marker_in_a_panel(many_models: pd.DataFrame) -> None:
    fig = energy_per_token_axes(many_models)
    crowded = max(fig.axes, key=lambda ax: len(_errorbars(ax)))
    styles = []
    for container in _errorbars(crowded):
        line = container.lines[0]
        assert line is not None
        assert line.get_color() in PALETTE
        styles.append((line.get_color(), line.get_marker()))
    assert len(styles) == 11 and len(set(styles)) == 11
    assert len({c for c, _ in styles}) == len(PALETTE)  # more series than colours: every colour in use, markers tell


def test_energy_ticks_read_as_plain_numbers(many_models: pd.DataFrame) -> None:
    labels = _tick_labels(energy_per_token_axes(many_models))
    assert labels and not [t for t in labels if any(s in t for s in UNREADABLE)]
    assert {"1", "4", "16"} <= set(labels)  # the batch sizes


def test_energy_workloads_keep_their_line_styles_apart() -> None:
    two = pd.concat([hubdata.configurations(models=("a", "b")),
                     hubdata.configurations(models=("a", "b"), scale=1.5).assign(workload="decode-128-256")])
    fig = energy_per_token_axes(two)
    for ax in fig.axes:
        lines = [c.lines[0] for c in _errorbars(ax)]
        keys = [(line.get_color(), line.get_marker(), str(line.get_linestyle())) for line in lines if line]
        assert len(keys) == len(set(keys)) == 2


def test_energy_figure_without_intervals_or_rows_still_draws(tmp_path: Path) -> None:
    bare = hubdata.configurations().drop(columns=["energy_per_token_j_ci95_low", "energy_per_token_j_ci95_high"])
    assert energy_per_token_figure(bare, tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    empty = hubdata.configurations().iloc[:0]
    assert energy_per_token_figure(empty, tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_energy_figure_is_deterministic(many_models: pd.DataFrame, tmp_path: Path) -> None:
    a = energy_per_token_figure(many_models, tmp_path / "a.png").read_bytes()
    b = energy_per_token_figure(many_models, tmp_path / "b.png").read_bytes()
    assert a == b


# --- quality against J/token ---------------------------------------------------------------------------------------

def _quality_rows(n: int, sources: tuple[str, ...] = ("measured",), spread: float = 1.0) -> pd.DataFrame:
    """`n` configurations of one model in as many formats, quality and energy with their intervals."""
    rng = np.random.default_rng(4)
    energy = 0.4 * np.exp(spread * rng.uniform(0, 2.5, n))
    quality = rng.uniform(0.5, 0.62, n)
    return pd.DataFrame({
        "model": "gemma3-270m", "quantization": [f"Q{i}_K" for i in range(n)],
        "framework": ["llamacpp" if i % 2 else "transformers" for i in range(n)],
        "engine_args_json": json.dumps({}), "workload": "fixed-64-32", "batch_size": 1, "hardware_id": "cpu",
        "energy_per_token_j": energy, "energy_per_token_j_ci95_low": energy * 0.95,
        "energy_per_token_j_ci95_high": energy * 1.08, "quality_acc_mean": quality,
        "quality_acc_ci95_low": quality - 0.07, "quality_acc_ci95_high": quality + 0.06,
        "quality_source": [sources[i % len(sources)] for i in range(n)]})


def test_quality_points_carry_both_intervals() -> None:
    rows = _quality_rows(9)
    fig = quality_energy_axes(rows)
    assert fig is not None
    (container,) = _errorbars(fig.axes[0])
    assert container.has_xerr and container.has_yerr
    xerr, yerr = _bar_spans(container, 0), _bar_spans(container, 1)
    order = rows.sort_values("energy_per_token_j")
    assert [lo for lo, _ in xerr] == pytest.approx(order["energy_per_token_j_ci95_low"].tolist())
    assert [hi for _, hi in yerr] == pytest.approx(order["quality_acc_ci95_high"].tolist())


def test_quality_source_is_told_by_colour_marker_and_legend() -> None:
    fig = quality_energy_axes(_quality_rows(9, sources=("measured", "published", "derived")))
    assert fig is not None
    containers = _errorbars(fig.axes[0])
    styles = {(c.lines[0].get_color(), c.lines[0].get_marker()) for c in containers if c.lines[0]}
    assert len(styles) == 3 and {c for c, _ in styles} <= set(OKABE_ITO.values())
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    for source in ("measured", "published", "derived", "Pareto front"):
        assert any(source in t for t in legend_texts), legend_texts


def test_quality_labels_do_not_overlap_and_ticks_are_plain() -> None:
    rows = _quality_rows(9)
    fig = quality_energy_axes(rows)
    assert fig is not None
    texts = _labels(fig)
    assert len(texts) == 9  # few points: each one labelled (beside it, or by number with a key)
    _assert_apart(fig, texts)
    labels = _tick_labels(fig)
    assert not [t for t in labels if any(s in t for s in UNREADABLE)]


def test_crowded_quality_points_are_numbered_with_a_key() -> None:
    rows = _quality_rows(18, spread=0.08)  # 18 points within a few percent of each other's energy
    fig = quality_energy_axes(rows)
    assert fig is not None
    texts = _labels(fig)
    assert sorted(int(t.get_text()) for t in texts) == list(range(1, 19))
    _assert_apart(fig, texts)
    key = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert sum(t.split("  ")[0].isdigit() for t in key) == 18
    first = rows.sort_values(["energy_per_token_j", "quality_acc_mean"]).iloc[0]
    front = pareto_front(rows["energy_per_token_j"], rows["quality_acc_mean"])
    assert front[first.name] and f"1  {first['quantization']} · {first['framework']}" in key


def test_many_quality_points_label_the_front_only() -> None:
    rows = _quality_rows(60, sources=("published", "derived"))
    fig = quality_energy_axes(rows)
    assert fig is not None
    front = pareto_front(rows["energy_per_token_j"], rows["quality_acc_mean"])
    texts = _labels(fig)
    assert len(texts) == front.sum()
    _assert_apart(fig, texts)


def test_quality_figure_none_without_quality_and_deterministic(tmp_path: Path) -> None:
    assert quality_energy_figure(_quality_rows(3).assign(quality_acc_mean=None), tmp_path / "q.png") is None
    a = quality_energy_figure(_quality_rows(9), tmp_path / "a.png")
    b = quality_energy_figure(_quality_rows(9), tmp_path / "b.png")
    assert a is not None and b is not None and a.read_bytes() == b.read_bytes()


def test_quality_figure_of_an_older_table_without_source_or_intervals(tmp_path: Path) -> None:
    old = _quality_rows(5).drop(columns=["quality_source", "quality_acc_ci95_low", "quality_acc_ci95_high"])
    fig = quality_energy_axes(old)
    assert fig is not None
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("unknown" in t for t in legend_texts)


# --- the recommendation's front ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recommendation() -> Recommendation:
    return recommend(fit_predictor(make_configurations(120, seed=3), "test"), "H100-SXM", "chat")


def test_front_points_are_labelled_apart_with_their_energy_interval(recommendation: Recommendation) -> None:
    fig = front_figure(recommendation)
    ax = fig.axes[0]
    front = recommendation.front
    texts = _labels(fig)
    assert len(texts) == len(front)
    _assert_apart(fig, texts)
    (container,) = _errorbars(ax)
    assert container.lines[0] is not None and container.lines[0].get_color() == OKABE_ITO["blue"]
    spans = _bar_spans(container)
    assert [lo for lo, _ in spans] == pytest.approx(front["energy_per_token_j_low"].tolist())
    assert [hi for _, hi in spans] == pytest.approx(front["energy_per_token_j_high"].tolist())
    labels = _tick_labels(fig)
    assert labels and not [t for t in labels if any(s in t for s in UNREADABLE)]


def test_front_labels_name_every_front_point(recommendation: Recommendation) -> None:
    fig = front_figure(recommendation)
    shown = [t.get_text() for t in _labels(fig)]
    key = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    for _, row in recommendation.front.iterrows():  # beside the point, or in the key under its number
        name = f"{row['architecture']} {row['quantization']} {row['framework']}"
        assert any(name in s for s in [*shown, *key]), name


def test_plot_front_is_deterministic(recommendation: Recommendation, tmp_path: Path) -> None:
    png = plot_front(recommendation, tmp_path / "front.png")
    assert png.startswith(b"\x89PNG") and png == plot_front(recommendation)


# --- the README's ladder plot, redrawn from its table --------------------------------------------------------------

def test_ladder_plot_from_its_table(tmp_path: Path) -> None:
    from benchmarks.readme_figures import ladder_rows

    table = ("| quantization | framework | energy_per_token_j | energy_per_token_j_ci95_low | "
             "energy_per_token_j_ci95_high | tokens_per_s | quality_acc_mean | wc_arc_easy | wc_piqa | pareto |\n"
             "|---|---|---|---|---|---|---|---|---|---|\n"
             "| Q4_0 | llamacpp | 0.3977 | 0.3957 | 0.3996 | 50.294 | 0.59 | 0.48 | 0.7 | yes |\n"
             "| BF16 | transformers | 1.1513 | 1.1144 | 1.1882 | 17.352 | 0.57 | 0.42 | 0.72 |  |\n")
    rows = ladder_rows(table, questions=50)
    assert rows["quantization"].tolist() == ["Q4_0", "BF16"] and set(rows["quality_source"]) == {"measured"}
    se = np.sqrt(np.array([0.48 * 0.52, 0.7 * 0.3]) / 49)  # lm-eval's stderr of a 0/1 mean over 50 questions
    half = 1.96 * np.sqrt((se**2).sum()) / 2  # as aggregate combines the tasks' stderrs
    assert rows["quality_acc_ci95_high"].iloc[0] - 0.59 == pytest.approx(half)
    assert quality_energy_figure(rows, tmp_path / "q.png") is not None
