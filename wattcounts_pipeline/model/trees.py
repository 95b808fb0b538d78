"""Gradient-boosted trees as plain numbers: fitted with scikit-learn, saved as JSON, evaluated with numpy.

Keeping the fitted model as arrays of split features, thresholds, children and leaf values means a release
loads without unpickling anything (no code can run from a model file) and without importing scikit-learn,
which keeps `wattcounts recommend` fast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wattcounts_pipeline.model.errors import ModelError

logger = logging.getLogger(__name__)

MIN_ROWS_FOR_TREES = 12
"""Below this many rows only the mean is fitted: a handful of points cannot support splits."""


@dataclass(frozen=True)
class Tree:
    """One regression tree in scikit-learn's array layout (leaves have left == right == -1)."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Leaf values for rows of `x` (float64, as the histogram GBM compares them: x <= threshold goes left)."""
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        active = self.left[node] != -1
        while active.any():
            r, n = rows[active], node[active]
            go_left = x[r, self.feature[n]] <= self.threshold[n]
            node[r] = np.where(go_left, self.left[n], self.right[n])
            active = self.left[node] != -1
        return self.value[node]

    def to_dict(self) -> dict[str, list[Any]]:
        return {"feature": self.feature.tolist(), "threshold": self.threshold.tolist(), "left": self.left.tolist(),
                "right": self.right.tolist(), "value": self.value.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[Any]]) -> Tree:
        return cls(feature=np.asarray(data["feature"], dtype=np.int64),
                   threshold=np.asarray(data["threshold"], dtype=np.float64),
                   left=np.asarray(data["left"], dtype=np.int64), right=np.asarray(data["right"], dtype=np.int64),
                   value=np.asarray(data["value"], dtype=np.float64))


@dataclass(frozen=True)
class TreeEnsemble:
    """init + learning_rate · Σ tree(x): scikit-learn's HistGradientBoostingRegressor (squared error)."""

    features: tuple[str, ...]
    init: float
    learning_rate: float = 0.0
    trees: tuple[Tree, ...] = field(default_factory=tuple)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if np.isnan(x).any():
            raise ModelError("features contain NaN; the predictor needs every feature")
        x64 = x.astype(np.float64)
        raw = np.full(len(x), self.init, dtype=np.float64)
        for tree in self.trees:
            raw += self.learning_rate * tree.predict(x64)
        return raw

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "init": self.init, "learning_rate": self.learning_rate,
                "trees": [t.to_dict() for t in self.trees]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TreeEnsemble:
        return cls(features=tuple(data["features"]), init=float(data["init"]),
                   learning_rate=float(data["learning_rate"]), trees=tuple(Tree.from_dict(t) for t in data["trees"]))


def fit_mean(y: np.ndarray, features: list[str] | tuple[str, ...]) -> TreeEnsemble:
    """The constant model: no trees, just the mean of y."""
    return TreeEnsemble(features=tuple(features), init=float(np.mean(y)))


def fit_monotone(x: np.ndarray, y: np.ndarray, features: list[str] | tuple[str, ...],
                 monotone: dict[str, int]) -> TreeEnsemble:
    """Boosted depth-3 trees whose output never decreases (+1) or never increases (-1) along the features named
    in `monotone` (scikit-learn's histogram GBM, `monotonic_cst`); just the mean below MIN_ROWS_FOR_TREES rows.

    Why: a correction learned on the residual of a monotone physics model must not undo that monotonicity
    (J/token never rising with batch, never falling with bytes per weight), even where rows are sparse."""
    if len(y) < MIN_ROWS_FOR_TREES:
        return fit_mean(y, features)
    from sklearn.ensemble import HistGradientBoostingRegressor  # training only

    model = HistGradientBoostingRegressor(
        max_iter=100, learning_rate=0.08, max_depth=3, min_samples_leaf=max(2, min(10, len(y) // 20)),
        monotonic_cst=[int(monotone.get(f, 0)) for f in features], early_stopping=False, random_state=0)
    model.fit(x, y)
    trees = []
    for (predictor,) in model._predictors:  # one tree per iteration (a single output); leaf values are shrunk
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(Tree(feature=np.where(leaf, -2, nodes["feature_idx"].astype(np.int64)),
                          threshold=np.where(leaf, -2.0, nodes["num_threshold"].astype(np.float64)),
                          left=np.where(leaf, -1, nodes["left"].astype(np.int64)),
                          right=np.where(leaf, -1, nodes["right"].astype(np.int64)),
                          value=np.where(leaf, nodes["value"], 0.0).astype(np.float64)))
    return TreeEnsemble(features=tuple(features), init=float(np.ravel(model._baseline_prediction)[0]),
                        learning_rate=1.0, trees=tuple(trees))
