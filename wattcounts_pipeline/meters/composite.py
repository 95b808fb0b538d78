"""Several meters read as one: a GPU meter and RAPL together give GPU, CPU package and DRAM energy.

Their domains must not overlap, so the reading's total stays a sum of disjoint parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading


class CompositeMeter(EnergyMeter):
    """Opens and closes every inner meter's window together; the reading's method is the first meter's."""

    def __init__(self, meters: Sequence[EnergyMeter]) -> None:
        super().__init__()
        if not meters:
            raise MeterError("a composite meter needs at least one meter")
        self.meters = list(meters)
        self.method = self.meters[0].method

    def _snapshot(self) -> list[Any]:
        return [meter._snapshot() for meter in self.meters]

    def _reading(self, key: str, duration_s: float, begin: list[Any], end: list[Any]) -> EnergyReading:
        readings = [m._reading(key, duration_s, b, e) for m, b, e in zip(self.meters, begin, end, strict=True)]
        energy_j: dict[str, float] = {}
        for reading in readings:
            overlap = energy_j.keys() & reading.energy_j.keys()
            if overlap:
                raise MeterError(f"meters overlap on domain(s) {sorted(overlap)}: their sum would double-count")
            energy_j.update(reading.energy_j)
        info: dict[str, Any] = {}
        for reading in readings:
            info.update(reading.device_info)
        info["methods"] = {domain: r.method for r in readings for domain in r.energy_j}
        return EnergyReading(
            key=key, duration_s=duration_s, energy_j=energy_j, method=readings[0].method,
            flags=tuple(f for r in readings for f in r.flags),
            samples=tuple(sorted((s for r in readings for s in r.samples), key=lambda s: (s.t_s, s.domain))),
            device_info=info,
            integrated_energy_j={d: j for r in readings for d, j in r.integrated_energy_j.items()})

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        for meter in self.meters:
            info.update(meter.describe())
        return info

    def temperatures_c(self) -> dict[str, float]:
        return {d: t for meter in self.meters for d, t in meter.temperatures_c().items()}

    def close(self) -> None:
        for meter in self.meters:
            meter.close()
