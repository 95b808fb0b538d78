"""Versioned predictor releases: `<out_dir>/<release_tag>/` holding the model, its card and its metrics.

Cross-validation is not part of training (it refits the predictor once per held-out group, 4× the time of the
fit): `cross_validate_release` writes it afterwards into `<release_tag>/evaluation/`, and the recommendation never
waits for it.

The model is JSON (split features, thresholds, leaf values), never a pickle, so loading one cannot run code.
Its sha256 is recorded in metrics.json and checked on load, so a file that changed after training is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.model.errors import ModelError
from wattcounts_pipeline.model.predictor import DEFAULT_COVERAGE, TARGETS, Predictor

logger = logging.getLogger(__name__)

MODEL_FILE = "predictor.json"
CARD_FILE = "model_card.md"
METRICS_FILE = "metrics.json"
EVALUATION_FOLDER = "evaluation"
CV_JSON = "cross_validation.json"
CV_CARD = "cross_validation.md"
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
SHIPPED_DIR = Path(__file__).parent / "shipped"
"""The predictor the package ships (scripts/ship_predictor.py): what a fresh install recommends with."""


def _check_tag(release_tag: str) -> str:
    if not TAG_PATTERN.match(release_tag):
        raise ModelError(f"release tag {release_tag!r} must match {TAG_PATTERN.pattern} (it names a folder)")
    return release_tag


def _versions() -> dict[str, str]:
    import numpy
    import sklearn

    from wattcounts_pipeline import __version__

    return {"wattcounts_pipeline": __version__, "scikit-learn": sklearn.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__}


def _json_number(value: Any) -> Any:
    """Strict JSON has no NaN or infinity: write those as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


CV_MODELS = ("model", "roofline", "nearest")


def _cell(by_model: pd.DataFrame, model: str, column: str, fmt: str) -> str:
    return format(by_model.at[model, column], fmt) if model in by_model.index else "–"


def _cv_markdown(cv: pd.DataFrame) -> str:
    if cv.empty:
        return "_No grouping had two or more groups: nothing to cross-validate._"
    header = ["grouping", "target", *(f"{m} MAPE %" for m in CV_MODELS), *(f"{m} coverage" for m in CV_MODELS),
              "rows", "groups"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (grouping, target), part in cv.groupby(["grouping", "target"], sort=False):
        by_model = part.set_index("model")
        cells = [*(_cell(by_model, m, "mape", ".1f") for m in CV_MODELS),
                 *(_cell(by_model, m, "coverage", ".2f") for m in CV_MODELS)]
        counts = [str(int(part["n_rows"].iloc[0])), str(int(part["n_groups"].iloc[0]))]
        lines.append("| " + " | ".join([grouping, target, *cells, *counts]) + " |")
    return "\n".join(lines)


def render_card(predictor: Predictor, metrics: dict[str, Any]) -> str:
    """model_card.md: what the predictor was trained on, what it predicts, and how wrong it is out of sample."""
    d = predictor.domain
    target_lines = [(f"| target | modelled as | fitted | training rows | interval (nominal {predictor.coverage:.0%}) "
                     "| widening per thing never measured, per e-fold |"), "|---|---|---|---|---|---|"]
    for spec in TARGETS:
        model = predictor.models.get(spec.name)
        how = f"log({spec.name} / physics)" if spec.anchor else f"{spec.name} (0–1)"
        if model is None:
            target_lines.append(f"| {spec.name} | {how} | – | 0 | not predicted | – |")
            continue
        fitted = f"{len(model.ensemble.trees)} trees" if model.ensemble.trees else "offset only"
        width = ("unbounded (too few rows)" if math.isinf(model.half_width) else
                 f"× / ÷ {math.exp(model.half_width):.2f}" if spec.anchor else f"± {model.half_width:.3f}")
        target_lines.append(f"| {spec.name} | {how} | {fitted} | {model.n_rows} | {width} | +{model.widening[0]:g}, +{model.widening[1]:g} |")
    skipped = metrics["skipped_rows"]
    skipped_text = "\n".join(f"- {n} row(s): {reason}" for reason, n in skipped.items()) or "- none"
    features = sorted({f for spec in TARGETS for f in spec.features})
    return f"""# Watt Counts predictor `{predictor.release_tag}`

Predicts energy per output token (gross and idle-subtracted), throughput, time to first token, time per output
token and quality for a model × quantization × framework × workload × device, from the Watt Counts
configurations table.

## Training data
- {predictor.n_training_rows} configurations rows
- hardware: {", ".join(d.hardware)}
- architectures: {", ".join(d.architectures)}
- frameworks: {", ".join(d.frameworks)}; quantizations: {", ".join(d.quantizations)}
- batch sizes {d.ranges["batch_size"][0]:g}–{d.ranges["batch_size"][1]:g}, input tokens
  {d.ranges["input_tokens"][0]:g}–{d.ranges["input_tokens"][1]:g}, output tokens
  {d.ranges["output_tokens"][0]:g}–{d.ranges["output_tokens"][1]:g}
- quality from real-weight rows of: {", ".join(d.quality_architectures) or "none"}
- energy targets exclude rows whose energy_method is "estimate"

Rows left out (not in the catalogs):
{skipped_text}

## Targets
{chr(10).join(target_lines)}

Each physical target starts from a fitted physics model (wattcounts_pipeline/model/physics.py): a decode step
costs the engine's launch overhead (per layer, so eager engines are launch-bound at small batch) combined with the
GPU time of the roofline at fitted efficiencies; TTFT likewise for the prefill; tokens/s follows from TTFT and
TPOT; net energy is TDP × (fitted shares of the ideal memory and compute seconds and of the run time); gross
energy adds the device's measured idle power × run time. Its few parameters are shared across architectures
(per-hardware and per-setup factors shrunk toward 1; a setup is framework / mode, plus the weight format where
transformers runs it with kernels of its own). Boosted trees (scikit-learn HistGradientBoostingRegressor, depth
3, 100 rounds, monotone in batch; the mean alone below 12 rows) then model the log ratio of the measured value to
the physics from workload and engine features only, never the model's size; where they do not beat a single
fitted offset out of fold, the offset alone is kept ("offset only"). Every value is clipped to the roofline
(no TTFT/TPOT below it, no gross energy below idle power over the roofline time). Intervals are cross-conformal:
the {predictor.coverage:.0%} conformal quantile of out-of-fold |residual| / (1 + a · novelty + b · e-folds outside
the fold's training domain) (physics and trees refitted without the fold, folds grouped by architecture; novelty
counts the device, framework, format or setup never measured, e-folds those of model size, batch and lengths
beyond the measured ones, `Domain.distance_parts`); the table gives the width inside the domain, and a query
outside it is widened by the same factor. The slopes a and b are fitted per target on the same out-of-fold
residuals (pinball loss at the nominal level), each only where at least 20 of them lie outside along it, else 1.

## Features
{", ".join(f"`{f}`" for f in features)}

Roofline (the baseline's anchor, the bounds, and the compute-to-memory features): a decode step takes max((weight bytes + KV bytes) /
bandwidth, 2 · active params · batch / peak FLOP/s); its energy is TDP × step / batch. Device numbers are vendor datasheet values
(wattcounts_pipeline/model/catalog/hardware.yaml).

## Cross-validated error
In `{EVALUATION_FOLDER}/{CV_CARD}` once the `predictor_evaluation` asset has run on this release (whole groups
held out: leave one architecture / hardware / framework / quantization out, and the largest quarter of the
architectures held out at once; the model against two baselines).

## Limits
- A framework, device or architecture never measured is extrapolated; `recommend` warns when it does so.
- Trees do not extrapolate beyond the measured batch sizes and lengths; the physics scaling alone does, and the
  interval widens by 1 + b × the e-folds outside (of model size in the setup, batch, lengths), b fitted out of fold.
- A regime only one architecture shows (mixture of experts on eager transformers, tensor or pipeline
  parallel over several GPUs) cannot be predicted for another architecture: see benchmarks/results/
  predictor_extrapolation.md.
- An engine setup (framework / mode) or device never measured gets the physics' global overhead and
  efficiencies: e.g. a compiled engine without compiled rows is predicted as launch-bound as an eager one.
- Quality depends on the model and weight format only, not on the device or load.

## Files
- `{MODEL_FILE}` sha256 `{metrics["model_sha256"]}`
- versions: {", ".join(f"{k} {v}" for k, v in metrics["versions"].items())}

Load with `wattcounts_pipeline.model.registry.load(out_dir, "{predictor.release_tag}")`.
"""


def train(configurations_df: pd.DataFrame, release_tag: str, out_dir: Path,
          coverage: float = DEFAULT_COVERAGE) -> Path:
    """Fit and write `out_dir/<release_tag>/` (replacing an earlier folder of that tag); no cross-validation."""
    from wattcounts_pipeline.model.predictor import fit, training_table

    _check_tag(release_tag)
    rows, feats, skipped = training_table(configurations_df)
    predictor = fit(rows, feats, release_tag=release_tag, coverage=coverage)
    model_bytes = json.dumps(predictor.to_dict(), separators=(",", ":"), allow_nan=False).encode()
    reasons = pd.Series(list(skipped.values()), dtype=object).value_counts()
    metrics = {
        "release_tag": release_tag, "model_file": MODEL_FILE, "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "coverage_nominal": coverage, "n_training_rows": predictor.n_training_rows,
        "rows_per_target": {name: m.n_rows for name, m in predictor.models.items()},
        "skipped_rows": {str(k): int(v) for k, v in reasons.items()},
        "versions": _versions(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = atomic.staging_folder(out_dir, release_tag)  # a half-written release is never seen
    folder = out_dir / release_tag
    try:
        (staging / MODEL_FILE).write_bytes(model_bytes)
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        (staging / CARD_FILE).write_text(render_card(predictor, metrics), encoding="utf-8")
        if folder.exists():
            logger.warning("replacing existing predictor release %s", folder)
        atomic.replace_folder(staging, folder)
    except BaseException:
        atomic.remove_tree(staging)
        raise
    logger.info("predictor %s: %d rows, written to %s", release_tag, predictor.n_training_rows, folder)
    return folder


def cross_validate_release(configurations_df: pd.DataFrame, release_tag: str, out_dir: Path,
                           n_jobs: int = -1) -> pd.DataFrame:
    """Grouped cross-validation of the trained predictor `release_tag`, written to its `evaluation/` folder.

    `configurations_df` must be the table it was trained on (same rows used), so the figures describe it.
    """
    from wattcounts_pipeline.model.crossval import cross_validate
    from wattcounts_pipeline.model.predictor import training_table

    predictor = load(out_dir, release_tag)
    folder = Path(out_dir) / release_tag
    rows, feats, _ = training_table(configurations_df)
    if len(rows) != predictor.n_training_rows:
        raise ModelError(f"{folder}: trained on {predictor.n_training_rows} configurations rows, the table given has "
                         f"{len(rows)} usable ones; cross-validate it against the release it was trained on")
    cv, notes = cross_validate(rows, feats, predictor.coverage, n_jobs)
    metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    record = {"release_tag": release_tag, "model_sha256": metrics["model_sha256"],
              "coverage_nominal": predictor.coverage, "notes": notes, "versions": _versions(),
              "cv": [{k: _json_number(v) for k, v in r.items()} for r in cv.to_dict(orient="records")]}
    note_lines = "\n".join(f"- {n}" for n in notes) or "- none"
    card = f"""# Cross-validated error of predictor `{release_tag}`

Whole groups held out (leave one architecture / hardware / framework / quantization out; `largest`: the
largest quarter of the architectures by total parameters at once, trained on the smaller ones),
{len(rows)} configurations rows. MAPE in %, coverage is the fraction of held-out values inside the nominal
{predictor.coverage:.0%} interval. Baselines: `roofline` (anchor × one fitted scalar), `nearest` (closest
measured configuration).

{_cv_markdown(cv)}

Notes:
{note_lines}
"""
    staging = atomic.staging_folder(folder, EVALUATION_FOLDER)
    try:
        (staging / CV_JSON).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        (staging / CV_CARD).write_text(card, encoding="utf-8")
        atomic.replace_folder(staging, folder / EVALUATION_FOLDER)
    except BaseException:
        atomic.remove_tree(staging)
        raise
    cv.attrs["notes"] = notes
    return cv


def _tag_order(tag: str) -> tuple[tuple[int, ...], str]:
    return tuple(int(n) for n in re.findall(r"\d+", tag)), tag


def list_releases(out_dir: Path) -> list[str]:
    """Release tags under `out_dir`, oldest first (numeric parts compared as numbers: v0.10 after v0.9)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    tags = [p.name for p in out_dir.iterdir() if (p / MODEL_FILE).is_file() and TAG_PATTERN.match(p.name)]
    return sorted(tags, key=_tag_order)


def load(out_dir: Path, release_tag: str | None = None) -> Predictor:
    """The predictor of `release_tag` (default: the newest release), after checking its sha256."""
    out_dir = Path(out_dir)
    if release_tag is None:
        releases = list_releases(out_dir)
        if not releases:
            raise ModelError(f"no predictor release in {out_dir}; train one from a dataset release with "
                             "`wattcounts train RELEASE_DIR`, or materialize the energy_model asset in the UI")
        release_tag = releases[-1]
    folder = out_dir / _check_tag(release_tag)
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
        model_bytes = (folder / MODEL_FILE).read_bytes()
    except FileNotFoundError as exc:
        known = ", ".join(list_releases(out_dir)) or "none"
        raise ModelError(f"predictor release {release_tag!r} not found in {out_dir} ({exc.filename}); "
                         f"releases there: {known}") from None
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != metrics.get("model_sha256"):
        raise ModelError(f"{folder / MODEL_FILE}: sha256 {digest} does not match {metrics.get('model_sha256')} "
                         f"recorded in {METRICS_FILE}; refusing to load a model that changed after training")
    return Predictor.from_dict(json.loads(model_bytes))
