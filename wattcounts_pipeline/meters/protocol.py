"""The measurement protocol as plain functions: idle baseline, steady state and cool-down of a meter's window.
Repetition statistics live in core/stats.py, per-request attribution and the prefill/decode split in
meters/attribution.py.

They take a meter or plain numbers and return plain values, so they are tested without hardware and
reused by the measure stage and the benchmarks alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from wattcounts_pipeline.meters.base import EnergyMeter, PowerSample

logger = logging.getLogger(__name__)


def measure_idle(meter: EnergyMeter, duration_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, float]:
    """Mean idle power per domain (W) over `duration_s` of doing nothing, for idle-subtracted energy."""
    meter.begin_window("idle-baseline")
    sleep(duration_s)
    reading = meter.end_window("idle-baseline")
    if reading.duration_s <= 0:
        raise ValueError("the idle window lasted no time")
    return {domain: energy_j / reading.duration_s for domain, energy_j in reading.energy_j.items()}


def power_series(samples: Sequence[PowerSample], domain: str | None = None) -> tuple[list[float], list[float]]:
    """(t_s, power_w) of one domain, or of all domains summed per sampling instant when `domain` is None."""
    totals: dict[float, float] = {}
    for s in samples:
        if domain is None or s.domain == domain:
            totals[s.t_s] = totals.get(s.t_s, 0.0) + s.power_w
    times = sorted(totals)
    return times, [totals[t] for t in times]


def steady_window(t_s: ArrayLike, power_w: ArrayLike, band_fraction: float = 0.1,
                  middle_fraction: float = 0.5, smooth_n: int = 5) -> tuple[float, float]:
    """(start_s, end_s) of the steady part of a power trace, trimming ramp-up and ramp-down.

    The reference is the median power of the middle `middle_fraction` of the trace; the steady window runs
    from the first to the last moment the running median of `smooth_n` samples lies within ±`band_fraction`
    of it (the running median keeps one noisy sample from ending the window early).
    """
    t = np.asarray(t_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    if t.size < 3 or t.size != p.size:
        raise ValueError(f"need at least 3 (t_s, power_w) pairs of equal length, got {t.size} and {p.size}")
    lo_t = t[0] + (t[-1] - t[0]) * (1 - middle_fraction) / 2
    hi_t = t[-1] - (t[-1] - t[0]) * (1 - middle_fraction) / 2
    middle = p[(t >= lo_t) & (t <= hi_t)]
    reference_w = float(np.median(middle if middle.size else p))
    half = max(0, smooth_n // 2)
    smoothed = np.array([np.median(p[max(0, i - half):i + half + 1]) for i in range(p.size)])
    inside = np.flatnonzero(np.abs(smoothed - reference_w) <= band_fraction * abs(reference_w))
    if inside.size == 0:
        raise ValueError(f"no steady state: power never settles within ±{band_fraction:.0%} of {reference_w:.1f} W")
    return float(t[inside[0]]), float(t[inside[-1]])


@dataclass(frozen=True)
class CoolDown:
    """How a cool-down went: seconds waited, whether the baseline was reached (None: no sensor), end temps."""

    waited_s: float
    reached: bool | None
    temperatures_c: dict[str, float]


def cool_down(meter: EnergyMeter, baseline_temp_c: float | Mapping[str, float], tolerance_c: float = 3.0,
              timeout_s: float = 300.0, poll_s: float = 2.0, sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic) -> CoolDown:
    """Wait until every domain is back within `tolerance_c` of its baseline temperature, or `timeout_s`.

    Heat raises power (leakage) across back-to-back runs, so runs start from a comparable temperature.
    A meter without temperature makes this a no-op; a timeout is logged, not raised, and shows in `reached`.
    """
    temps = meter.temperatures_c()
    if not temps:
        return CoolDown(waited_s=0.0, reached=None, temperatures_c={})

    def baseline(domain: str) -> float:
        return baseline_temp_c if isinstance(baseline_temp_c, (int, float)) else baseline_temp_c[domain]

    start_s = clock()
    while True:
        if all(temp <= baseline(d) + tolerance_c for d, temp in temps.items()):
            return CoolDown(waited_s=clock() - start_s, reached=True, temperatures_c=temps)
        if clock() - start_s >= timeout_s:
            logger.warning("cool-down gave up after %.0f s: %s still above baseline + %.1f °C",
                           timeout_s, temps, tolerance_c)
            return CoolDown(waited_s=clock() - start_s, reached=False, temperatures_c=temps)
        sleep(poll_s)
        temps = meter.temperatures_c()
