"""The predictive model: features, training, evaluation and recommendation (no Dagster here).

Public API, imported lazily so that `import wattcounts_pipeline.model` stays cheap for the CLI:
`train`, `load`, `cross_validate_release`, `evaluate`, `fit_predictor`, `Predictor`, `recommend`, `Scenario`, `Candidate`,
`Recommendation`, `SCENARIOS`, `plot_front`, `build_features`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "registry", "load": "registry", "list_releases": "registry", "cross_validate_release": "registry",
    "evaluate": "crossval",
    "fit_predictor": "predictor", "Predictor": "predictor",
    "recommend": "recommendation", "Scenario": "recommendation", "Candidate": "recommendation",
    "Recommendation": "recommendation", "SCENARIOS": "recommendation",
    "plot_front": "plot",
    "build_features": "features",
}
__all__ = list(_EXPORTS)  # resolved lazily by __getattr__


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
