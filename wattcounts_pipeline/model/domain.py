"""What the training data covered, so a prediction outside it comes with a warning instead of a silent guess."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

RANGED = ("batch_size", "input_tokens", "output_tokens")


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

    @classmethod
    def from_features(cls, feats: pd.DataFrame, quality_feats: pd.DataFrame) -> Domain:
        setups = feats[["quant_key", "framework", "mode", "gpu_count"]].drop_duplicates()
        return cls(
            ranges={c: (float(feats[c].min()), float(feats[c].max())) for c in RANGED},
            hardware=tuple(sorted(feats["hardware_key"].unique())),
            architectures=tuple(sorted(feats["arch_key"].unique())),
            frameworks=tuple(sorted(feats["framework"].unique())),
            quantizations=tuple(sorted(feats["quant_key"].unique())),
            gpu_counts=tuple(sorted(int(c) for c in feats["gpu_count"].unique())),
            quality_architectures=tuple(sorted(quality_feats["arch_key"].unique())),
            setups=tuple(sorted((str(q), str(f), str(m), int(g)) for q, f, m, g in setups.itertuples(index=False))),
        )

    def warnings(self, feats: pd.DataFrame) -> list[str]:
        """One sentence per way the rows in `feats` leave the measured domain."""
        out = []
        for column, label, known in (("hardware_key", "hardware", self.hardware),
                                     ("arch_key", "architectures", self.architectures),
                                     ("framework", "frameworks", self.frameworks),
                                     ("quant_key", "quantizations", self.quantizations)):
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
                   setups=tuple((str(q), str(f), str(m), int(g)) for q, f, m, g in data["setups"]))
