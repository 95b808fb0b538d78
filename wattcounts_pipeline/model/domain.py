"""What the training data covered, so a prediction outside it comes with a warning instead of a silent guess."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

RANGED = ("batch_size", "input_tokens", "output_tokens")
SETUP_COLUMNS = ["quant_key", "framework", "mode", "gpu_count"]
CATEGORIES = (("hardware_key", "hardware", "device"), ("arch_key", "architectures", "architecture"),
              ("framework", "frameworks", "framework"), ("quant_key", "quantizations", "quantization"))
"""(feature column, `Domain` field of the values measured, the word for one of them)."""


def setup_key(quant: str, framework: str, mode: str, gpu_count: int) -> str:
    return f"{quant}|{framework}|{mode}|{int(gpu_count)}"


def _params_b(feats: pd.DataFrame) -> np.ndarray:
    return np.exp(feats["log_total_params"].to_numpy(float)) / 1e9


@dataclass(frozen=True)
class Domain:
    """Ranges and categories seen in training (feature frames from `features.featurize`)."""

    ranges: dict[str, tuple[float, float]]
    hardware: tuple[str, ...]
    architectures: tuple[str, ...]
    frameworks: tuple[str, ...]
    quantizations: tuple[str, ...]
    gpu_counts: tuple[int, ...]
    quality_architectures: tuple[str, ...]
    setups: tuple[tuple[str, str, str, int], ...]
    """(quantization, framework, mode, gpu_count) combinations measured: the default recommendation candidates."""
    setup_params_b: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Smallest and largest model measured per setup (`setup_key`), in billions of total parameters: a model
    outside that span is a size extrapolation (predictors saved before it have none, so no such warning)."""

    @classmethod
    def from_features(cls, feats: pd.DataFrame, quality_feats: pd.DataFrame) -> Domain:
        setups = feats[SETUP_COLUMNS].drop_duplicates()
        params = feats[SETUP_COLUMNS].assign(params_b=_params_b(feats)).groupby(SETUP_COLUMNS)["params_b"]
        spans = params.agg(["min", "max"])
        return cls(
            ranges={c: (float(feats[c].min()), float(feats[c].max())) for c in RANGED},
            hardware=tuple(sorted(feats["hardware_key"].unique())),
            architectures=tuple(sorted(feats["arch_key"].unique())),
            frameworks=tuple(sorted(feats["framework"].unique())),
            quantizations=tuple(sorted(feats["quant_key"].unique())),
            gpu_counts=tuple(sorted(int(c) for c in feats["gpu_count"].unique())),
            quality_architectures=tuple(sorted(quality_feats["arch_key"].unique())),
            setups=tuple(sorted((str(q), str(f), str(m), int(g)) for q, f, m, g in setups.itertuples(index=False))),
            setup_params_b={setup_key(*key): (float(lo), float(hi)) for key, lo, hi in
                            zip(spans.index, spans["min"], spans["max"], strict=True)},
        )

    def extrapolations(self, feats: pd.DataFrame) -> list[str]:
        """Per row of `feats`, why its prediction lies outside what was measured ("" when inside): a device,
        architecture, engine or format never measured, a setup never measured, a model larger or smaller
        than any measured in its setup, a batch or length outside the measured range."""
        params_b = _params_b(feats)
        out = []
        for i, row in enumerate(feats.itertuples(index=False)):
            r = row._asdict()
            reasons = [f"{word} {r[column]} never measured" for column, known, word in CATEGORIES
                       if r[column] not in getattr(self, known)]
            key = setup_key(r["quant_key"], r["framework"], r["mode"], r["gpu_count"])
            where = f"{r['quant_key']} on {r['framework']} ({r['mode']}, {int(r['gpu_count'])} GPU(s))"
            span = self.setup_params_b.get(key)
            if span is None and self.setup_params_b and not reasons:
                reasons.append(f"{where} never measured")
            elif span is not None and params_b[i] > span[1] * 1.05:
                reasons.append(f"{params_b[i]:.1f}B: larger than any model measured as {where} "
                               f"(largest {span[1]:.1f}B)")
            elif span is not None and params_b[i] < span[0] / 1.05:
                reasons.append(f"{params_b[i]:.2g}B: smaller than any model measured as {where} "
                               f"(smallest {span[0]:.2g}B)")
            reasons += [f"{column} {r[column]:g} outside the measured [{lo:g}, {hi:g}]"
                        for column, (lo, hi) in self.ranges.items() if not lo <= r[column] <= hi]
            out.append("; ".join(reasons))
        return out

    def distance_parts(self, feats: pd.DataFrame) -> np.ndarray:
        """Per row, how far it lies outside what was measured, as two columns: [novelty, e-folds]. Novelty
        counts 1 for each of device, framework, format or setup never measured; e-folds are how far its model
        size lies beyond the sizes measured in its setup (all setups' sizes where the setup is new), plus how far
        its batch and lengths lie outside their measured ranges, in log units. 0 inside. Intervals widen along
        each at a slope of their own (`predictor.TargetModel`): a new engine and a bigger model are different
        kinds of unknown."""
        params_b = _params_b(feats)
        all_lo = min((lo for lo, _ in self.setup_params_b.values()), default=np.nan)
        all_hi = max((hi for _, hi in self.setup_params_b.values()), default=np.nan)
        out = np.zeros((len(feats), 2))
        for i, row in enumerate(feats[["hardware_key", "framework", "quant_key", "mode", "gpu_count"]]
                                .itertuples(index=False)):
            hw, fw, quant, mode, gpus = row
            span = self.setup_params_b.get(setup_key(quant, fw, mode, gpus))
            out[i, 0] = (float(hw not in self.hardware) + float(fw not in self.frameworks)
                         + float(quant not in self.quantizations) + float(span is None and bool(self.setup_params_b)))
            lo, hi = span if span is not None else (all_lo, all_hi)
            if np.isfinite(lo) and np.isfinite(hi):
                out[i, 1] += max(0.0, np.log(params_b[i] / hi), np.log(lo / params_b[i]))
        for column, (lo, hi) in self.ranges.items():  # + 1: a prompt may be 0 tokens long
            value = feats[column].to_numpy(float) + 1.0
            out[:, 1] += np.maximum(0.0, np.maximum(np.log(value / (hi + 1.0)), np.log((lo + 1.0) / value)))
        return out

    def warnings(self, feats: pd.DataFrame) -> list[str]:
        """One sentence per way the rows in `feats` leave the measured domain."""
        out = []
        for column, label, _ in CATEGORIES:
            known = getattr(self, label)
            unseen = sorted(set(feats[column]) - set(known))
            if unseen:
                out.append(f"{label} never measured: {', '.join(unseen)}; predictions extrapolate from the roofline "
                           f"and other {label} (measured: {', '.join(known) or 'none'})")
        unseen_counts = sorted({int(c) for c in feats["gpu_count"]} - set(self.gpu_counts))
        if unseen_counts:
            out.append(f"GPU counts never measured: {unseen_counts} (measured: {list(self.gpu_counts)})")
        for column in RANGED:
            lo, hi = self.ranges[column]
            outside = feats[column][(feats[column] < lo) | (feats[column] > hi)]
            if len(outside):
                out.append(f"{column} {sorted(set(outside.round(1)))} outside the measured range [{lo:g}, {hi:g}]; "
                           "trees do not extrapolate, so these rest on the roofline scaling alone")
        sized = [reason for row in self.extrapolations(feats) for reason in row.split("; ")
                 if "than any model measured" in reason]
        if sized:
            out.append(f"{len(sized)} row(s) lie outside the model sizes measured in their setup (e.g. "
                       f"{sized[0]}): those predictions extrapolate in size; each row's `extrapolation` says why")
        no_quality = sorted(set(feats["arch_key"]) - set(self.quality_architectures))
        if no_quality and self.quality_architectures:
            out.append(f"quality never evaluated for {', '.join(no_quality)}; its quality is extrapolated from "
                       f"{', '.join(self.quality_architectures) or 'nothing'}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Domain:
        return cls(ranges={k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()},
                   hardware=tuple(data["hardware"]), architectures=tuple(data["architectures"]),
                   frameworks=tuple(data["frameworks"]), quantizations=tuple(data["quantizations"]),
                   gpu_counts=tuple(int(c) for c in data["gpu_counts"]),
                   quality_architectures=tuple(data["quality_architectures"]),
                   setups=tuple((str(q), str(f), str(m), int(g)) for q, f, m, g in data["setups"]),
                   setup_params_b={k: (float(v[0]), float(v[1]))
                                   for k, v in data.get("setup_params_b", {}).items()})
