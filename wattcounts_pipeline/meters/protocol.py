"""The measurement protocol as plain functions: idle baseline, steady state, cool-down, repetition
statistics, per-request attribution and the prefill/decode split.

They take a meter or plain numbers and return plain values, so they are tested without hardware and
reused by the measure stage and the benchmarks alike.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from wattcounts_pipeline.core.stats import t95
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


@dataclass(frozen=True)
class RepeatStats:
    """Mean, sample standard deviation, 95 % Student-t confidence interval and coefficient of variation."""

    n: int
    mean: float
    std: float
    ci95_low: float
    ci95_high: float

    @property
    def ci95_half_width(self) -> float:
        return (self.ci95_high - self.ci95_low) / 2

    @property
    def cv(self) -> float:
        """std / |mean|; NaN for a zero mean or a single value."""
        return self.std / abs(self.mean) if self.mean else math.nan


def summarize(values: Sequence[float]) -> RepeatStats:
    """Statistics over repetitions; one value gives NaN spread and interval, never a false zero."""
    if not values:
        raise ValueError("no values to summarize")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return RepeatStats(n=1, mean=mean, std=math.nan, ci95_low=math.nan, ci95_high=math.nan)
    std = statistics.stdev(values)
    half_width = float(t95(len(values))) * std / math.sqrt(len(values))
    return RepeatStats(n=len(values), mean=mean, std=std, ci95_low=mean - half_width, ci95_high=mean + half_width)


@dataclass(frozen=True)
class Attribution:
    """Energy per request (input order) and the energy of moments when no request was active."""

    per_request_j: tuple[float, ...]
    unattributed_j: float


def attribute_energy(requests: Sequence[tuple[float, float]], power_w: float | ArrayLike,
                     t_s: ArrayLike | None = None,
                     window_s: tuple[float, float] | None = None) -> Attribution:
    """Split energy among overlapping requests: at each instant the power is shared equally by the active ones.

    `power_w` is a constant mean power, or a trace sampled at `t_s` (piecewise linear, held beyond its ends).
    `window_s` (default: first start to last end) bounds the energy considered; requests are clipped to it.
    """
    if not requests:
        raise ValueError("no requests to attribute energy to")
    starts = np.array([float(s) for s, _ in requests])
    ends = np.array([float(e) for _, e in requests])
    if np.any(ends < starts):
        raise ValueError("a request ends before it starts")
    w0, w1 = window_s if window_s is not None else (float(starts.min()), float(ends.max()))
    starts, ends = np.clip(starts, w0, w1), np.clip(ends, w0, w1)
    constant_w = float(power_w) if isinstance(power_w, (int, float)) else None
    times = np.asarray([] if constant_w is not None or t_s is None else t_s, dtype=float)
    powers = np.asarray([] if constant_w is not None else power_w, dtype=float)
    if constant_w is None and (times.size == 0 or times.shape != powers.shape):
        raise ValueError("a power trace needs t_s of the same, non-zero length")
    bounds = np.unique(np.concatenate(([w0, w1], starts, ends, times[(times > w0) & (times < w1)])))
    values = np.full(bounds.shape, constant_w) if constant_w is not None else np.interp(bounds, times, powers)
    segment_j = (values[1:] + values[:-1]) * 0.5 * np.diff(bounds)
    # Active requests per segment: +1 at each start's boundary index, -1 at each end's.
    change = np.zeros(bounds.size)
    np.add.at(change, np.searchsorted(bounds, starts), 1)
    np.add.at(change, np.searchsorted(bounds, ends), -1)
    active = np.cumsum(change)[:-1]
    share_j = np.where(active > 0, segment_j / np.maximum(active, 1), 0.0)
    cumulative_j = np.concatenate(([0.0], np.cumsum(share_j)))
    per_request = cumulative_j[np.searchsorted(bounds, ends)] - cumulative_j[np.searchsorted(bounds, starts)]
    return Attribution(per_request_j=tuple(float(x) for x in per_request),
                       unattributed_j=float(segment_j[active <= 0].sum()))


@dataclass(frozen=True)
class PrefillDecodeSplit:
    """Energy of prefill, of decode, and decode energy per generated token (after the first)."""

    prefill_energy_j: float
    decode_energy_j: float
    decode_tokens: int
    decode_energy_j_per_token: float


def split_prefill_decode(full_energy_j: float, full_output_tokens: int, prefill_energy_j: float,
                         prefill_output_tokens: int) -> PrefillDecodeSplit:
    """Separate prefill from decode with a prefill-only run (one output token per request) beside a full run.

    Both runs take the same prompts; token counts are totals over all requests. The prefill-only run's
    energy is the prefill's; the rest of the full run's energy decoded the remaining tokens.
    """
    decode_tokens = full_output_tokens - prefill_output_tokens
    if decode_tokens <= 0:
        raise ValueError(f"the full run ({full_output_tokens} tokens) must output more than the prefill-only run "
                         f"({prefill_output_tokens})")
    decode_energy_j = full_energy_j - prefill_energy_j
    if decode_energy_j < 0:
        raise ValueError(f"the prefill-only run used more energy ({prefill_energy_j:.3f} J) than the full run "
                         f"({full_energy_j:.3f} J): the windows are too short or too noisy to separate")
    return PrefillDecodeSplit(prefill_energy_j=prefill_energy_j, decode_energy_j=decode_energy_j,
                              decode_tokens=decode_tokens, decode_energy_j_per_token=decode_energy_j / decode_tokens)
