"""Meter any block of your own code, as CodeCarbon and Zeus users do, with the pipeline's meters and windows.

    import wattcounts

    with wattcounts.meter() as m:
        model.generate(...)
    print(m.energy_j, m.duration_s, m.method)

    @wattcounts.measured
    def step(): ...
    step(); print(step.last.energy_j)

The meter is the one `wattcounts measure` would pick (NVML with RAPL; Zeus for AMD, Apple Silicon and Jetson;
RAPL; else the CPU-time estimate, which says so in `method`), or the one named (`meter="zeus"`, an EnergyMeter).
`idle_s` > 0 first measures the idle draw that long, so `energy_net_j` is what the block added above idle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Metered:
    """What one metered block used; the numbers are None until the block has ended."""

    name: str
    energy_j: float | None = None
    duration_s: float | None = None
    method: str | None = None
    energy_by_domain_j: dict[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    idle_power_w: float | None = None
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_power_w(self) -> float | None:
        if self.energy_j is None or not self.duration_s:
            return None
        return self.energy_j / self.duration_s

    @property
    def energy_net_j(self) -> float | None:
        """Energy above the idle draw (needs `idle_s` > 0)."""
        if self.energy_j is None or self.idle_power_w is None or self.duration_s is None:
            return None
        return self.energy_j - self.idle_power_w * self.duration_s

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "energy_j": self.energy_j, "duration_s": self.duration_s, "method": self.method,
                "mean_power_w": self.mean_power_w, "energy_net_j": self.energy_net_j,
                "energy_by_domain_j": dict(self.energy_by_domain_j), "flags": list(self.flags)}


class meter:  # lower case: a context manager used like a function, as `open` is
    """`with meter() as m:` measures the block; `m` is a Metered filled in when the block ends (also when it
    raises: the energy spent before the error is real too)."""

    def __init__(self, name: str = "block", meter: str | EnergyMeter | None = None, idle_s: float = 0.0,
                 gpus: int | None = None) -> None:
        self.result = Metered(name)
        self._choice, self._idle_s, self._gpus = meter, idle_s, gpus
        self._meter: EnergyMeter | None = None
        self._owned = False

    def __enter__(self) -> Metered:
        from wattcounts_pipeline.meters.protocol import measure_idle
        from wattcounts_pipeline.meters.select import best_meter

        if isinstance(self._choice, EnergyMeter):
            self._meter = self._choice
        else:
            self._meter, self._owned = best_meter(self._choice, gpus=self._gpus), True
        try:
            if self._idle_s > 0:
                self.result.idle_power_w = sum(measure_idle(self._meter, self._idle_s).values())
            self._meter.begin_window(self._key)
        except BaseException:
            self._close()
            raise
        return self.result

    @property
    def _key(self) -> str:
        return f"wattcounts.meter:{self.result.name}:{id(self)}"

    def __exit__(self, *exc_info: object) -> None:
        assert self._meter is not None
        try:
            self._fill(self._meter.end_window(self._key))
        finally:
            self._close()

    def _fill(self, reading: EnergyReading) -> None:
        r = self.result
        r.energy_j, r.duration_s, r.method = reading.total_energy_j, reading.duration_s, reading.method
        r.energy_by_domain_j, r.flags = dict(reading.energy_j), reading.flags
        r.device = dict(reading.device_info)

    def _close(self) -> None:
        if self._owned and self._meter is not None:
            self._meter.close()
        self._meter = None


def measured(fn: Callable[P, R] | None = None, *, name: str | None = None, meter_name: str | None = None,
             idle_s: float = 0.0) -> Any:
    """Decorator: every call runs inside `meter()`; the wrapper's `.last` holds the latest Metered and
    `.history` all of them. Use bare (`@measured`) or with options (`@measured(meter_name="zeus")`)."""

    def wrap(func: Callable[P, R]) -> Callable[P, R]:
        label = name or str(getattr(func, "__qualname__", "call"))

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            block = meter(label, meter_name, idle_s)
            try:
                with block:
                    return func(*args, **kwargs)
            finally:
                wrapper.last = block.result  # type: ignore[attr-defined]
                wrapper.history.append(block.result)  # type: ignore[attr-defined]

        wrapper.last = None  # type: ignore[attr-defined]
        wrapper.history = []  # type: ignore[attr-defined]
        return wrapper

    return wrap(fn) if fn is not None else wrap
