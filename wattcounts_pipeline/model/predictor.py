"""The predictor: per target, boosted trees on the log ratio to its roofline anchor, with conformal intervals.

Modelling `log(measured / roofline)` rather than the raw value lets the physics carry the scale across devices and
model sizes (which trees cannot extrapolate), and leaves the trees the engine's efficiency; where the trees do not
beat a single fitted offset out of fold, the offset is kept. Intervals are cross-conformal: the spread of
out-of-fold residuals, folds grouped by architecture when there are enough of them, so an interval reflects how
well the model does on architectures it has not seen.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wattcounts_pipeline.model.domain import Domain
from wattcounts_pipeline.model.errors import ModelError
from wattcounts_pipeline.model.features import MODEL_FEATURES, PHYSICS_FEATURES, build_features, featurize
from wattcounts_pipeline.model.trees import TreeEnsemble, fit_ensemble, fit_mean

logger = logging.getLogger(__name__)

FORMAT = "wattcounts-predictor"
FORMAT_VERSION = 1
DEFAULT_COVERAGE = 0.8
EXCLUDED_ENERGY_METHODS = ("estimate",)
"""Energy estimated from CPU time is a model, not a measurement: never train energy targets on it."""


@dataclass(frozen=True)
class TargetSpec:
    """A predicted column, the roofline column it is modelled relative to (None: modelled directly), its inputs,
    and which rows may teach it."""

    name: str
    anchor: str | None
    features: tuple[str, ...]
    measured_energy_only: bool = False
    real_weights_only: bool = False

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

    def residual(self, y: np.ndarray, feats: pd.DataFrame) -> np.ndarray:
        if self.anchor is None:
            return y
        return np.log(y) - np.log(feats[self.anchor].to_numpy(dtype=float))

    def value(self, z: np.ndarray, feats: pd.DataFrame) -> np.ndarray:
        """Inverse of `residual`: the target's value from a (possibly shifted) model output."""
        if self.anchor is None:
            return np.clip(z, 0.0, 1.0)
        return feats[self.anchor].to_numpy(dtype=float) * np.exp(z)


TARGETS: tuple[TargetSpec, ...] = (
    TargetSpec("energy_per_token_j", "roofline_energy_j_per_token", tuple(PHYSICS_FEATURES),
               measured_energy_only=True),
    TargetSpec("energy_per_token_net_j", "roofline_energy_j_per_token", tuple(PHYSICS_FEATURES),
               measured_energy_only=True),
    TargetSpec("tokens_per_s", "roofline_tokens_per_s", tuple(PHYSICS_FEATURES)),
    TargetSpec("ttft_p50_s", "roofline_prefill_s", tuple(PHYSICS_FEATURES)),
    TargetSpec("tpot_p50_s", "roofline_step_s", tuple(PHYSICS_FEATURES)),
    TargetSpec("quality_acc_mean", None, tuple(MODEL_FEATURES), real_weights_only=True),
)
TARGET_SPECS = {t.name: t for t in TARGETS}


def conformal_half_width(residuals: np.ndarray, coverage: float) -> float:
    """Split-conformal quantile: the ⌈(n + 1) · coverage⌉-th smallest |residual|; infinite when that exceeds n."""
    k = math.ceil((len(residuals) + 1) * coverage)
    if k > len(residuals):
        return math.inf
    return float(np.sort(np.abs(residuals))[k - 1])


Fitter = Callable[[np.ndarray, np.ndarray], TreeEnsemble]


def out_of_fold_residuals(x: np.ndarray, r: np.ndarray, groups: np.ndarray, fitter: Fitter) -> np.ndarray:
    """Residuals of models that did not see the row: grouped folds when there are ≥ 3 groups, else 5-fold."""
    from sklearn.model_selection import GroupKFold, KFold  # training only

    n = len(r)
    if n < 2:
        return np.empty(0)
    n_groups = len(np.unique(groups))
    if n_groups >= 3:
        splits = GroupKFold(n_splits=min(5, n_groups)).split(x, r, groups)
    else:
        splits = KFold(n_splits=min(5, n), shuffle=True, random_state=0).split(x)
    oof = np.empty(n)
    for train_idx, test_idx in splits:
        oof[test_idx] = r[test_idx] - fitter(x[train_idx], r[train_idx]).predict(x[test_idx])
    return oof


@dataclass(frozen=True)
class TargetModel:
    """A fitted target: the ensemble, its interval half-width (in residual units) and how many rows fitted it."""

    spec: TargetSpec
    ensemble: TreeEnsemble
    half_width: float
    n_rows: int

    def predict(self, feats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point, low and high for each feature row."""
        z = self.ensemble.predict(feats[list(self.spec.features)].to_numpy(dtype=float))
        return (self.spec.value(z, feats), self.spec.value(z - self.half_width, feats),
                self.spec.value(z + self.half_width, feats))

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.spec.name, "anchor": self.spec.anchor, "n_rows": self.n_rows,
                "half_width": None if math.isinf(self.half_width) else self.half_width,
                "ensemble": self.ensemble.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetModel:
        spec = TARGET_SPECS.get(data["target"])
        ensemble = TreeEnsemble.from_dict(data["ensemble"])
        if spec is None or spec.anchor != data["anchor"] or spec.features != ensemble.features:
            raise ModelError(f"saved target {data['target']!r} does not match this version's definition; "
                             "retrain the predictor with this version of wattcounts_pipeline")
        half_width = math.inf if data["half_width"] is None else float(data["half_width"])
        return cls(spec=spec, ensemble=ensemble, half_width=half_width, n_rows=int(data["n_rows"]))


def fit_target(spec: TargetSpec, rows: pd.DataFrame, feats: pd.DataFrame, coverage: float) -> TargetModel | None:
    """Fit one target on its usable rows (None when there are none).

    The trees are kept only if their out-of-fold error beats the calibrated roofline alone (a single fitted
    offset): with few or unrepresentative rows, splits can hurt more than they help on unseen groups.
    """
    mask = spec.usable(rows).to_numpy()
    if not mask.any():
        logger.warning("no usable training rows for %s; it will not be predicted", spec.name)
        return None
    if not mask.all():
        logger.info("%s: %d of %d rows have no usable value (missing, non-positive, estimated energy or random "
                    "weights) and are not used", spec.name, int((~mask).sum()), len(mask))
    f = feats[mask]
    x = f[list(spec.features)].to_numpy(dtype=float)
    r = spec.residual(rows.loc[mask, spec.name].to_numpy(dtype=float), f)
    groups = f["arch_key"].to_numpy()
    fitters: dict[str, Fitter] = {"trees": lambda xs, ys: fit_ensemble(xs, ys, spec.features),
                                  "offset": lambda xs, ys: fit_mean(ys, spec.features)}
    residuals = {name: out_of_fold_residuals(x, r, groups, fitter) for name, fitter in fitters.items()}
    error = {name: float(np.mean(np.abs(v))) if len(v) else math.inf for name, v in residuals.items()}
    choice = min(error, key=error.__getitem__)  # a tie keeps the trees (which are the mean below 12 rows)
    logger.info("%s: %s kept (out-of-fold mean |residual| %s)", spec.name, choice, error)
    return TargetModel(spec=spec, ensemble=fitters[choice](x, r),
                       half_width=conformal_half_width(residuals[choice], coverage), n_rows=int(mask.sum()))


@dataclass(frozen=True)
class Predictor:
    """Fitted targets plus the training domain; `predict` takes configurations-like rows."""

    release_tag: str
    coverage: float
    models: dict[str, TargetModel]
    domain: Domain
    n_training_rows: int

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per target: `<target>` (point), `<target>_low`, `<target>_high` (nominal `coverage` interval)."""
        return self.predict_features(build_features(frame))

    def predict_features(self, feats: pd.DataFrame) -> pd.DataFrame:
        """As `predict`, for rows already through `features.build_features`; NaN for targets never fitted."""
        out = {}
        for spec in TARGETS:
            model = self.models.get(spec.name)
            point, low, high = model.predict(feats) if model else (np.full(len(feats), np.nan),) * 3
            out |= {spec.name: point, f"{spec.name}_low": low, f"{spec.name}_high": high}
        return pd.DataFrame(out, index=feats.index)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "release_tag": self.release_tag,
                "coverage": self.coverage, "n_training_rows": self.n_training_rows,
                "domain": self.domain.to_dict(), "models": [m.to_dict() for m in self.models.values()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Predictor:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"not a {FORMAT} v{FORMAT_VERSION} file "
                             f"(format {data.get('format')!r}, version {data.get('format_version')!r})")
        models = [TargetModel.from_dict(m) for m in data["models"]]
        return cls(release_tag=data["release_tag"], coverage=float(data["coverage"]),
                   models={m.spec.name: m for m in models}, domain=Domain.from_dict(data["domain"]),
                   n_training_rows=int(data["n_training_rows"]))


def training_table(configurations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[Any, str]]:
    """Contract-conformed rows and their features, minus rows the catalogs do not cover (returned with reasons)."""
    from wattcounts_pipeline.core.contracts import load_contract  # pandera: training only

    rows = load_contract("configurations").conform(configurations.reset_index(drop=True))
    feats, skipped = featurize(rows, skip_unknown=True)
    for reason in sorted(set(skipped.values())):
        logger.warning("training skips %d row(s): %s", sum(r == reason for r in skipped.values()), reason)
    return rows.loc[feats.index], feats, skipped


def fit(rows: pd.DataFrame, feats: pd.DataFrame, *, release_tag: str,
        coverage: float = DEFAULT_COVERAGE) -> Predictor:
    """Fit every target on already-featurized rows (see `training_table`)."""
    if rows.empty:
        raise ModelError("no training rows: the configurations table is empty or no row matches the catalogs")
    models = {spec.name: m for spec in TARGETS if (m := fit_target(spec, rows, feats, coverage)) is not None}
    quality_rows = TARGET_SPECS["quality_acc_mean"].usable(rows).to_numpy()
    return Predictor(release_tag=release_tag, coverage=coverage, models=models,
                     domain=Domain.from_features(feats, feats[quality_rows]), n_training_rows=len(rows))


def fit_predictor(configurations: pd.DataFrame, release_tag: str = "dev",
                  coverage: float = DEFAULT_COVERAGE) -> Predictor:
    """Train on a configurations table (see schemas/configurations.yaml)."""
    rows, feats, _ = training_table(configurations)
    return fit(rows, feats, release_tag=release_tag, coverage=coverage)
