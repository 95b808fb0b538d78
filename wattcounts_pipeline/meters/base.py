"""The EnergyMeter interface: named measurement windows that return energy per domain.

Every meter converts its native unit (NVML mJ, RAPL µJ) to joules once, at its boundary; everything
past this module speaks joules, watts and seconds.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from wattcounts_pipeline.core.errors import MeterError

# Methods, best first. A row's `energy_method` is one of these.
METHODS = ("nvml_counter", "nvml_power_integration", "amdsmi_counter", "amdsmi_power_integration", "apple_soc_counter",
           "jetson_power_integration", "rapl", "replay", "estimate")


@dataclass(frozen=True)
class PowerSample:
    """One trace point of one domain (a GPU, a CPU package)."""

    t_s: float  # seconds since the window began
    domain: str  # e.g. "gpu:0"
    power_w: float
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    energy_j: float | None = None  # the device's cumulative energy counter at this instant, where it has one


@dataclass(frozen=True)
class EnergyReading:
    """What one window measured.

    `energy_j` maps a domain ("gpu:0", "cpu:package-0", "dram:package-0", "cpu:estimate") to joules.
    Domains never overlap, so their sum is the total.
    """

    key: str
    duration_s: float
    energy_j: dict[str, float]
    method: str
    flags: tuple[str, ...] = ()
    samples: tuple[PowerSample, ...] = ()
    device_info: dict[str, Any] = field(default_factory=dict)
    # Energy integrated from the power samples, kept beside a counter reading as an independent cross-check.
    integrated_energy_j: dict[str, float] = field(default_factory=dict)

    @property
    def total_energy_j(self) -> float:
        return float(sum(self.energy_j.values()))

    def domain_energy_j(self, prefix: str) -> float | None:
        """Sum over the domains of one kind ("gpu", "cpu", "dram"); None when the meter has none."""
        values = [v for k, v in self.energy_j.items() if k.split(":", 1)[0] == prefix]
        return float(sum(values)) if values else None

    @property
    def mean_power_w(self) -> float:
        return self.total_energy_j / self.duration_s if self.duration_s > 0 else 0.0


class EnergyMeter(abc.ABC):
    """Measures energy over named windows; windows may nest or overlap (each key is independent)."""

    method: str = "estimate"

    def __init__(self) -> None:
        self._open: dict[str, tuple[float, Any]] = {}

    def begin_window(self, key: str, sync: Callable[[], None] | None = None) -> None:
        """Open window `key`; `sync` (e.g. torch.cuda.synchronize) runs first so queued work is not missed."""
        if key in self._open:
            raise MeterError(f"window {key!r} is already open")
        if sync is not None:
            sync()
        self._open[key] = (self._now(), self._snapshot())

    def end_window(self, key: str, sync: Callable[[], None] | None = None) -> EnergyReading:
        """Close window `key` and return its reading."""
        if key not in self._open:
            raise MeterError(f"window {key!r} was never opened")
        if sync is not None:
            sync()
        end_snapshot = self._snapshot()
        t_end = self._now()
        t_begin, begin_snapshot = self._open.pop(key)
        return self._reading(key, t_end - t_begin, begin_snapshot, end_snapshot)

    def _now(self) -> float:
        """The meter's clock in seconds; a replay meter runs on trace time instead of the wall clock."""
        return time.perf_counter()

    @abc.abstractmethod
    def _snapshot(self) -> Any:
        """Whatever the meter needs at a window edge (counter values, CPU times, a sample index)."""

    @abc.abstractmethod
    def _reading(self, key: str, duration_s: float, begin: Any, end: Any) -> EnergyReading:
        """Turn two edge snapshots into a reading."""

    def describe(self) -> dict[str, Any]:
        """Hardware fingerprint stored with each row (device names, power limit, driver…)."""
        return {}

    def temperatures_c(self) -> dict[str, float]:
        """Current temperature per domain, for cool-down between runs; empty when the meter has no sensor."""
        return {}

    def close(self) -> None:
        """Release handles and stop samplers."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
