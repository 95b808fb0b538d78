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

    def predict(self, x32: np.ndarray) -> np.ndarray:
        """Leaf values for rows of `x32` (features already rounded to float32, as scikit-learn compares them)."""
        node = np.zeros(len(x32), dtype=np.int64)
        rows = np.arange(len(x32))
        active = self.left[node] != -1
        while active.any():
            r, n = rows[active], node[active]
            go_left = x32[r, self.feature[n]] <= self.threshold[n]
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
    """init + learning_rate · Σ tree(x): scikit-learn's GradientBoostingRegressor with squared error."""

    features: tuple[str, ...]
    init: float
    learning_rate: float = 0.0
    trees: tuple[Tree, ...] = field(default_factory=tuple)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if np.isnan(x).any():
            raise ModelError("features contain NaN; the predictor needs every feature")
        x32 = x.astype(np.float32).astype(np.float64)
        raw = np.full(len(x), self.init, dtype=np.float64)
        for tree in self.trees:
            raw += self.learning_rate * tree.predict(x32)
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


def fit_ensemble(x: np.ndarray, y: np.ndarray, features: list[str] | tuple[str, ...]) -> TreeEnsemble:
    """Boosted depth-3 trees on (x, y); just the mean when there are too few rows for splits."""
    if len(y) < MIN_ROWS_FOR_TREES:
        return fit_mean(y, features)
    from sklearn.ensemble import GradientBoostingRegressor  # training only: loading never needs scikit-learn

    model = GradientBoostingRegressor(
        loss="squared_error", n_estimators=100, learning_rate=0.08, max_depth=3, subsample=0.8,
        min_samples_leaf=max(2, min(10, len(y) // 20)), random_state=0)
    model.fit(x, y)
    trees = tuple(
        Tree(feature=est.tree_.feature.astype(np.int64), threshold=est.tree_.threshold.astype(np.float64),
             left=est.tree_.children_left.astype(np.int64), right=est.tree_.children_right.astype(np.int64),
             value=est.tree_.value[:, 0, 0].astype(np.float64))
        for est in model.estimators_[:, 0])
    return TreeEnsemble(features=tuple(features), init=float(np.ravel(model.init_.constant_)[0]),
                        learning_rate=float(model.learning_rate), trees=trees)
