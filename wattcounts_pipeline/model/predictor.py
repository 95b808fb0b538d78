"""The predictor: a fitted physics model per target, corrected by boosted trees, with conformal intervals.

The physics (`physics.py`) predicts time from per-layer launch overhead and the roofline, throughput from time,
and energy as power × time (dynamic energy from bytes moved, FLOPs and run time, plus idle power × run time): a
handful of parameters shared across architectures, so it carries the scale across model sizes, which trees cannot
extrapolate. The trees then model `log(measured / physics)` from the workload and the engine setup only, never
the model's size, so nothing learned on small models is carried to a bigger one: size scales through the
physics alone. They are monotone in batch (trees.fit_monotone; see `_monotone` for why), and the result
is clipped to what the roofline allows (`Physics.bounds`). Where they do not beat a single fitted
offset out of fold, the offset is kept. Intervals are cross-conformal: the spread of out-of-fold residuals
(physics and trees refitted without the fold), folds grouped by architecture when there are enough of them,
each scaled by 1 + how far the row lay outside its fold's training domain (`Domain.distance_parts`: what was
never measured, and e-folds of size, batch and length beyond it, each at a slope of its own), so an interval
reflects how well the model does on architectures it has not seen and widens for a query outside the data. The
slopes are fitted on the same out-of-fold residuals where enough of them lie outside (`fit_widening`): how fast
error grows outside the data is measured, not assumed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.vocab import FRAMEWORKS
from wattcounts_pipeline.model.domain import Domain
from wattcounts_pipeline.model.errors import ModelError
from wattcounts_pipeline.model.features import MODEL_FEATURES, build_features, featurize
from wattcounts_pipeline.model.known_quality import from_records, known_quality, to_records
from wattcounts_pipeline.model.physics import Physics, fit_physics
from wattcounts_pipeline.model.trees import TreeEnsemble, fit_mean, fit_monotone

logger = logging.getLogger(__name__)

FORMAT = "wattcounts-predictor"
FORMAT_VERSION = 4
DEFAULT_COVERAGE = 0.8
MAX_FOLDS = 10
"""Out-of-fold splits for tree selection and intervals: one group (architecture) per fold up to this many."""
EXCLUDED_ENERGY_METHODS = ("estimate",)
"""Energy estimated from CPU time is a model, not a measurement: never train energy targets on it."""


@dataclass(frozen=True)
class TargetSpec:
    """A predicted column, the physics column it is modelled relative to (None: modelled directly), the plain
    roofline column of the same quantity (for the baselines), its inputs, and which rows may teach it."""

    name: str
    anchor: str | None
    roofline: str | None
    features: tuple[str, ...]
    measured_energy_only: bool = False
    real_weights_only: bool = False
    monotone: tuple[tuple[str, int], ...] = ()
    """(feature, +1 or -1): the correction never decreases / never increases along it."""

    def usable(self, rows: pd.DataFrame) -> pd.Series:
        """Training rows with a trustworthy value of this target."""
        y = pd.to_numeric(rows[self.name], errors="coerce")
        ok = y.notna() & np.isfinite(y)
        if self.anchor is not None:
            ok &= y > 0
        if self.measured_energy_only:
            ok &= ~rows["energy_method"].isin(EXCLUDED_ENERGY_METHODS)
        if self.real_weights_only:
            ok &= rows["weights"] == "real"
        return ok.fillna(False).astype(bool)

    def residual(self, y: np.ndarray, feats: pd.DataFrame, anchor: str | None = None) -> np.ndarray:
        """log(y / anchor column) (`anchor` defaults to the physics anchor); y itself for a direct target."""
        anchor = anchor or self.anchor
        if anchor is None:
            return y
        return np.log(y) - np.log(feats[anchor].to_numpy(dtype=float))

    def value(self, z: np.ndarray, feats: pd.DataFrame, anchor: str | None = None) -> np.ndarray:
        """Inverse of `residual`: the target's value from a (possibly shifted) model output."""
        anchor = anchor or self.anchor
        if anchor is None:
            return np.clip(z, 0.0, 1.0)
        return feats[anchor].to_numpy(dtype=float) * np.exp(z)


RESIDUAL_FEATURES = ("log_batch_size", "log_input_tokens", "log_output_tokens", "bytes_per_weight", "compiled",
                     "log_compute_to_memory", "log_prefill_compute_to_memory", *(f"fw_{f}" for f in FRAMEWORKS),
                     "is_gpu", "device_count", "is_moe")
"""What the physics' residual may depend on: workload, weight format and engine setup, not the model's size (the
compute-to-memory ratios are set by batch and bytes per weight). With size features the trees learnt offsets per
architecture that do not transfer: leave-one-architecture-out gross J/token error 17.5% with them, 16.8% without
(523 recorded configurations and the physics of then, benchmarks/predictor_extrapolation.py)."""
BATCH_DIRECTION = ("log_batch_size", "log_compute_to_memory", "log_prefill_compute_to_memory")
"""Features that all grow with batch (the compute-to-memory ratios ∝ batch / bytes per weight): constraining the
correction along all of them makes it monotone in batch. Not in bytes per weight: measured J/token is not
monotone there (Mistral-7B on llama-server, batch 1: Q2_K 1.81, Q4_0 1.43, Q8_0 2.15 J/token on an H200; low-bit
kernels spend the bytes they save on dequantizing), so a constraint would fight the data; the roofline bound holds."""


def _monotone(batch: int) -> tuple[tuple[str, int], ...]:
    """Constraints making a correction move with batch in direction `batch` (+1 rising, -1 falling).

    Why J/token may only fall and tokens/s only rise with batch: a batch of b requests can always be served as
    smaller batches one after another, at their energy per token and throughput."""
    return tuple((f, batch) for f in BATCH_DIRECTION)


TARGETS: tuple[TargetSpec, ...] = (
    TargetSpec("energy_per_token_j", "phys_energy_j", "roofline_energy_j_per_token", RESIDUAL_FEATURES,
               measured_energy_only=True, monotone=_monotone(-1)),
    TargetSpec("energy_per_token_net_j", "phys_energy_net_j", "roofline_energy_j_per_token", RESIDUAL_FEATURES,
               measured_energy_only=True, monotone=_monotone(-1)),
    TargetSpec("tokens_per_s", "phys_tokens_per_s", "roofline_tokens_per_s", RESIDUAL_FEATURES,
               monotone=_monotone(+1)),
    TargetSpec("ttft_p50_s", "phys_ttft_s", "roofline_prefill_s", RESIDUAL_FEATURES, monotone=_monotone(+1)),
    TargetSpec("tpot_p50_s", "phys_tpot_s", "roofline_step_s", RESIDUAL_FEATURES, monotone=_monotone(+1)),
    TargetSpec("quality_acc_mean", None, None, tuple(MODEL_FEATURES), real_weights_only=True),
)
TARGET_SPECS = {t.name: t for t in TARGETS}


def conformal_half_width(residuals: np.ndarray, coverage: float, scale: np.ndarray | None = None) -> float:
    """Split-conformal quantile: the ⌈(n + 1) · coverage⌉-th smallest |residual| / scale (scale defaults to 1);
    infinite when that exceeds n. The interval of a new row is then ± this × its own scale."""
    k = math.ceil((len(residuals) + 1) * coverage)
    if k > len(residuals):
        return math.inf
    scores = np.abs(residuals) if scale is None else np.abs(residuals) / scale
    return float(np.sort(scores)[k - 1])


DEFAULT_WIDENING = (1.0, 1.0)
"""Interval growth per unit of each part of `Domain.distance_parts` (per thing never measured, per e-fold) where
the out-of-fold rows cannot measure it, and for predictors saved before the slopes were fitted: +100% each."""
WIDENING_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Slopes `fit_widening` chooses from. The floor of 0.1 keeps every interval outside the data wider than inside."""
MIN_OUTSIDE_ROWS = 20
"""Out-of-fold rows lying outside their fold's domain along a part of the distance, needed before that part's
slope is fitted rather than taken from DEFAULT_WIDENING."""
Widening = tuple[float, float]


def interval_scale(parts: np.ndarray, slopes: Widening = DEFAULT_WIDENING) -> np.ndarray:
    """How much wider than in-domain an interval is at `Domain.distance_parts` (rows × [novelty, e-folds]):
    1 inside, + each slope × its part."""
    parts = np.asarray(parts, dtype=float).reshape(-1, 2)
    return 1.0 + parts @ np.asarray(slopes, dtype=float)


def fit_widening(residuals: np.ndarray, parts: np.ndarray, coverage: float) -> Widening:
    """The slopes (from WIDENING_GRID) whose intervals (conformal half-width × `interval_scale`) best fit the
    `coverage` quantile of the out-of-fold |residuals| along each part of the distance, by pinball loss, the
    proper score of a quantile. Why fitted: with both slopes fixed at 1, out-of-fold rows larger than their
    fold's models were covered more often than nominal and rows inside less (546 configurations, 2026-12-06: the
    fit gives 0.3 per e-fold for gross J/token); the data say how fast error grows outside, in the training rows only,
    never the held-out ones. A part with fewer than MIN_OUTSIDE_ROWS rows outside keeps its DEFAULT_WIDENING
    slope (grouped by architecture, the folds rarely leave an engine or format unseen, so novelty is usually
    that case); all defaults without residuals or with one not finite."""
    r = np.abs(np.asarray(residuals, dtype=float))
    d = np.asarray(parts, dtype=float).reshape(-1, 2)
    if not len(r) or not np.isfinite(r).all():
        return DEFAULT_WIDENING
    grids = [WIDENING_GRID if int((d[:, j] > 0).sum()) >= MIN_OUTSIDE_ROWS else (DEFAULT_WIDENING[j],)
             for j in range(2)]

    def loss(slopes: Widening) -> float:
        scale = interval_scale(d, slopes)
        u = r - conformal_half_width(r, coverage, scale) * scale
        return float(np.mean(np.maximum(coverage * u, (coverage - 1) * u)))

    candidates = [(a, b) for a in grids[0] for b in grids[1]]
    losses = [loss(c) for c in candidates]
    return candidates[int(np.argmin(losses))] if np.isfinite(losses).all() else DEFAULT_WIDENING


Fitter = Callable[[np.ndarray, np.ndarray], TreeEnsemble]


def folds(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: grouped folds (at most MAX_FOLDS) when there are ≥ 3 groups, else 5-fold;
    none below 2 rows."""
    from sklearn.model_selection import GroupKFold, KFold  # training only

    n = len(groups)
    if n < 2:
        return []
    if len(np.unique(groups)) >= 3:
        return list(GroupKFold(n_splits=min(MAX_FOLDS, len(np.unique(groups)))).split(np.zeros(n), groups=groups))
    return list(KFold(n_splits=min(5, n), shuffle=True, random_state=0).split(np.zeros(n)))


def energy_rows(rows: pd.DataFrame) -> np.ndarray:
    """Rows whose energy is measured (the energy part of the physics is fitted on these only)."""
    return TARGET_SPECS["energy_per_token_j"].usable(rows).to_numpy()


def with_anchors(physics: Physics, feats: pd.DataFrame) -> pd.DataFrame:
    """`feats` plus the physics prediction of every target (the `phys_*` anchor columns)."""
    return pd.concat([feats, physics.anchors(feats)], axis=1)


Split = tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray]


def fold_features(rows: pd.DataFrame, feats: pd.DataFrame) -> list[Split]:
    """Per out-of-fold split: train and test positions, the features of all rows with anchors from physics
    fitted on the training positions only (so out-of-fold residuals include the physics' own error), and each
    row's distance from the training positions' domain (`Domain.distance_parts`, so the intervals learn how error
    grows outside it)."""
    out = []
    for train_idx, test_idx in folds(feats["arch_key"].to_numpy()):
        physics = fit_physics(rows.iloc[train_idx], feats.iloc[train_idx], energy_rows(rows.iloc[train_idx]))
        train = feats.iloc[train_idx]
        distance = Domain.from_features(train, train.iloc[:0]).distance_parts(feats)
        out.append((train_idx, test_idx, with_anchors(physics, feats), distance))
    return out


def out_of_fold_residuals(spec: TargetSpec, rows: pd.DataFrame, mask: np.ndarray, splits: list[Split],
                          fitter: Fitter) -> tuple[np.ndarray, np.ndarray]:
    """Residuals of models (physics and `fitter`) that did not see the row, for the rows in `mask`, and each
    such row's distance from the domain those models were fitted on."""
    y = rows[spec.name].to_numpy(dtype=float)
    oof, dist = [], []
    for train_idx, test_idx, feats, distance in splits:
        tr, te = train_idx[mask[train_idx]], test_idx[mask[test_idx]]
        if not len(te):
            continue
        dist.append(distance[te])
        x = feats[list(spec.features)].to_numpy(dtype=float)
        r = spec.residual(y, feats)
        if not len(tr) or not np.isfinite(r[tr]).all() or not np.isfinite(r[te]).all():
            oof.append(np.full(len(te), np.inf))
            continue
        oof.append(r[te] - fitter(x[tr], r[tr]).predict(x[te]))
    if not oof:
        return np.empty(0), np.empty((0, 2))
    return np.concatenate(oof), np.concatenate(dist)


def _widening(value: Any) -> Widening:
    a, b = (float(v) for v in value)
    return a, b


@dataclass(frozen=True)
class TargetModel:
    """A fitted target: the ensemble, its interval half-width inside the training domain (in residual units; a
    row outside it gets this × `interval_scale` of its distance, at slopes `widening`) and how many rows fitted it."""

    spec: TargetSpec
    ensemble: TreeEnsemble
    half_width: float
    n_rows: int
    widening: Widening = DEFAULT_WIDENING

    def predict(self, feats: pd.DataFrame, distance: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point, low and high for each feature row (features with the physics anchors; `distance`: each row's
        `Domain.distance_parts`, 0 when not given)."""
        z = self.ensemble.predict(feats[list(self.spec.features)].to_numpy(dtype=float))
        width = self.half_width * interval_scale(np.zeros((len(feats), 2)) if distance is None else distance,
                                                 self.widening)
        return (self.spec.value(z, feats), self.spec.value(z - width, feats), self.spec.value(z + width, feats))

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.spec.name, "anchor": self.spec.anchor, "n_rows": self.n_rows,
                "half_width": None if math.isinf(self.half_width) else self.half_width,
                "widening": list(self.widening), "ensemble": self.ensemble.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetModel:
        spec = TARGET_SPECS.get(data["target"])
        ensemble = TreeEnsemble.from_dict(data["ensemble"])
        if spec is None or spec.anchor != data["anchor"] or spec.features != ensemble.features:
            raise ModelError(f"saved target {data['target']!r} does not match this version's definition; "
                             "retrain the predictor with this version of wattcounts_pipeline")
        half_width = math.inf if data["half_width"] is None else float(data["half_width"])
        return cls(spec=spec, ensemble=ensemble, half_width=half_width, n_rows=int(data["n_rows"]),
                   widening=_widening(data.get("widening", DEFAULT_WIDENING)))  # saved before 2026-12-06: 1, 1


def fit_target(spec: TargetSpec, rows: pd.DataFrame, feats: pd.DataFrame, coverage: float,
               splits: list[Split], warn: bool = True) -> TargetModel | None:
    """Fit one target on its usable rows (None when there are none); `feats` carry the physics anchors and
    `splits` the out-of-fold anchors (see `fold_features`). `warn` False: a cross-validation fold, whose
    missing targets the full fit has already warned about once.

    The trees are kept only if their out-of-fold error beats the calibrated physics alone (a single fitted
    offset): with few or unrepresentative rows, splits can hurt more than they help on unseen groups.
    """
    mask = spec.usable(rows).to_numpy()
    if not mask.any():
        logger.log(logging.WARNING if warn else logging.DEBUG,
                   "no usable training rows for %s; it will not be predicted", spec.name)
        return None
    if not mask.all():
        logger.info("%s: %d of %d rows have no usable value (missing, non-positive, estimated energy or random "
                    "weights) and are not used", spec.name, int((~mask).sum()), len(mask))
    f = feats[mask]
    x = f[list(spec.features)].to_numpy(dtype=float)
    r = spec.residual(rows.loc[mask, spec.name].to_numpy(dtype=float), f)
    if not np.isfinite(r).all():
        logger.warning("%s: the physics gives no finite anchor; it will not be predicted", spec.name)
        return None
    monotone = dict(spec.monotone)
    fitters: dict[str, Fitter] = {"trees": lambda xs, ys: fit_monotone(xs, ys, spec.features, monotone),
                                  "offset": lambda xs, ys: fit_mean(ys, spec.features)}
    residuals = {name: out_of_fold_residuals(spec, rows, mask, splits, fitter) for name, fitter in fitters.items()}
    error = {name: float(np.mean(np.abs(v))) if len(v) and np.isfinite(v).all() else math.inf
             for name, (v, _) in residuals.items()}
    choice = min(error, key=error.__getitem__)  # a tie keeps the trees (which are the mean below 12 rows)
    logger.info("%s: %s kept (out-of-fold mean |residual| %s)", spec.name, choice, error)
    oof, distance = residuals[choice]
    widening = fit_widening(oof, distance, coverage)
    return TargetModel(spec=spec, ensemble=fitters[choice](x, r), n_rows=int(mask.sum()), widening=widening,
                       half_width=conformal_half_width(oof, coverage, interval_scale(distance, widening)))


@dataclass(frozen=True)
class Predictor:
    """Fitted targets plus the training domain; `predict` takes configurations-like rows. `known_quality`: the
    quality each trained setup is known to have and its source (model/known_quality.py)."""

    release_tag: str
    coverage: float
    models: dict[str, TargetModel]
    domain: Domain
    n_training_rows: int
    physics: Physics
    known_quality: pd.DataFrame = field(default_factory=lambda: from_records([]), compare=False)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per target: `<target>` (point), `<target>_low`, `<target>_high` (nominal `coverage` interval)."""
        return self.predict_features(build_features(frame))

    def predict_features(self, feats: pd.DataFrame) -> pd.DataFrame:
        """As `predict`, for rows already through `features.build_features`; NaN for targets never fitted.
        Intervals widen with each row's distance from the training domain; every value is clipped to what
        physics allows (`Physics.bounds`)."""
        distance = self.domain.distance_parts(feats)
        bounds = self.physics.bounds(feats)
        feats = with_anchors(self.physics, feats)
        out: dict[str, np.ndarray] = {}
        for spec in TARGETS:
            model = self.models.get(spec.name)
            values = model.predict(feats, distance) if model else (np.full(len(feats), np.nan),) * 3
            if spec.name in bounds:
                values = tuple(np.clip(v, *bounds[spec.name]) for v in values)
            point, low, high = values
            out |= {spec.name: point, f"{spec.name}_low": low, f"{spec.name}_high": high}
        return pd.DataFrame(out, index=feats.index)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "release_tag": self.release_tag,
                "coverage": self.coverage, "n_training_rows": self.n_training_rows,
                "domain": self.domain.to_dict(), "physics": self.physics.to_dict(),
                "models": [m.to_dict() for m in self.models.values()],
                "known_quality": to_records(self.known_quality)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Predictor:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"not a {FORMAT} v{FORMAT_VERSION} file "
                             f"(format {data.get('format')!r}, version {data.get('format_version')!r})")
        models = [TargetModel.from_dict(m) for m in data["models"]]
        return cls(release_tag=data["release_tag"], coverage=float(data["coverage"]),
                   models={m.spec.name: m for m in models}, domain=Domain.from_dict(data["domain"]),
                   n_training_rows=int(data["n_training_rows"]), physics=Physics.from_dict(data["physics"]),
                   known_quality=from_records(data.get("known_quality", [])))  # absent before 2026-12-05


def training_table(configurations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[Any, str]]:
    """Contract-conformed rows and their features, minus rows the catalogs do not cover (returned with reasons)."""
    from wattcounts_pipeline.core.contracts import load_contract  # pandera: training only

    rows = load_contract("configurations").conform(configurations.reset_index(drop=True))
    feats, skipped = featurize(rows, skip_unknown=True)
    for reason in sorted(set(skipped.values())):
        logger.warning("training skips %d row(s): %s", sum(r == reason for r in skipped.values()), reason)
    return rows.loc[feats.index], feats, skipped


def fit(rows: pd.DataFrame, feats: pd.DataFrame, *, release_tag: str,
        coverage: float = DEFAULT_COVERAGE, warn: bool = True) -> Predictor:
    """Fit every target on already-featurized rows (see `training_table`); `warn` False for a CV fold."""
    if rows.empty:
        raise ModelError("no training rows: the configurations table is empty or no row matches the catalogs")
    physics = fit_physics(rows, feats, energy_rows(rows))
    splits = fold_features(rows, feats)
    anchored = with_anchors(physics, feats)
    models = {spec.name: m for spec in TARGETS
              if (m := fit_target(spec, rows, anchored, coverage, splits, warn)) is not None}
    quality_rows = TARGET_SPECS["quality_acc_mean"].usable(rows).to_numpy()
    return Predictor(release_tag=release_tag, coverage=coverage, models=models,
                     domain=Domain.from_features(feats, feats[quality_rows]), n_training_rows=len(rows),
                     physics=physics, known_quality=known_quality(rows, feats))


def fit_predictor(configurations: pd.DataFrame, release_tag: str = "dev",
                  coverage: float = DEFAULT_COVERAGE) -> Predictor:
    """Train on a configurations table (see schemas/configurations.yaml)."""
    rows, feats, _ = training_table(configurations)
    return fit(rows, feats, release_tag=release_tag, coverage=coverage)
