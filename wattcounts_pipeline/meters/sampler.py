"""A background thread that polls power, temperature, SM clock and energy counter at a fixed rate.

NVML readings are polled, never pushed: a window's power trace, and the power-integration fallback where
the energy counter is missing, both need samples taken while the workload runs. Timestamps come from
`time.perf_counter`, the clock the meters' window edges use, so samples and windows line up.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

logger = logging.getLogger(__name__)


class ProbeRow(NamedTuple):
    """One domain's reading at one instant; fields a device cannot report are None."""

    domain: str  # "gpu:0", ...
    power_w: float
    temperature_c: float | None
    sm_clock_mhz: float | None
    counter_energy_j: float | None  # the device's cumulative energy counter (NVML: Volta and newer), in J


# One stored sample: (t_s on the perf_counter clock, *ProbeRow), kept a plain tuple: the 20 Hz buffer holds many.
StoredSample = tuple[float, str, float, float | None, float | None, float | None]

DEFAULT_PERIOD_S = 0.05  # 20 Hz: twice NVML's ~100 ms counter update, cheap enough to stay under 0.5 % overhead
DEFAULT_MAX_SAMPLES = 1_000_000  # ~14 h of one GPU at 20 Hz; older samples are dropped first


def integrate_energy_j(t_s: ArrayLike, power_w: ArrayLike, t0_s: float, t1_s: float) -> float:
    """Energy over [t0_s, t1_s] of the piecewise-linear power through the samples (trapezoid rule).

    Power is interpolated at the window edges and held at the first/last sample beyond them, so a window
    with samples only around it (shorter than the sample period) still gets a non-zero, honest value.
    """
    t = np.asarray(t_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    if t.size == 0:
        raise ValueError("cannot integrate power: no samples")
    if t1_s <= t0_s:
        return 0.0
    inner = t[(t > t0_s) & (t < t1_s)]
    points = np.concatenate(([t0_s], inner, [t1_s]))
    values = np.interp(points, t, p)
    return float(np.sum((values[1:] + values[:-1]) * 0.5 * np.diff(points)))


class PowerSampler:
    """Calls `probe` every `period_s` seconds on a daemon thread and keeps the rows in a bounded buffer.

    An exception in the probe (a GPU lost mid-run) stops the thread and is kept in `error`, for the meter
    to raise at the next window edge instead of losing it in a background thread.
    """

    def __init__(self, probe: Callable[[], Sequence[ProbeRow]], period_s: float = DEFAULT_PERIOD_S,
                 max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
        if period_s <= 0:
            raise ValueError(f"sample period must be positive, got {period_s}")
        self.probe = probe
        self.period_s = period_s
        self.error: BaseException | None = None
        self.cpu_s = 0.0  # CPU seconds the sampling thread has used: a bound on what it takes from the workload
        self._buffer: deque[StoredSample] = deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()  # one probe at a time, so stored times stay in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wattcounts-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, 10 * self.period_s))
            self._thread = None

    def sample_now(self) -> tuple[float, list[ProbeRow]]:
        """Probe once, synchronously (the meters do this at each window edge); returns (t_s, rows)."""
        with self._probe_lock:
            t_start = time.perf_counter()
            rows = list(self.probe())
            t_s = 0.5 * (t_start + time.perf_counter())
            with self._lock:
                self._buffer.extend((t_s, *row) for row in rows)
        return t_s, rows

    def _run(self) -> None:
        next_t = time.perf_counter()
        cpu_before_s, thread_start_s = self.cpu_s, time.thread_time()
        while not self._stop.is_set():
            try:
                self.sample_now()
            except Exception as exc:  # noqa: BLE001 - kept, and raised by the meter at the next window edge
                self.error = exc
                logger.error("power sampler stopped: %s", exc)
                return
            self.cpu_s = cpu_before_s + time.thread_time() - thread_start_s
            next_t += self.period_s
            wait_s = next_t - time.perf_counter()
            if wait_s < 0:  # fell behind (a slow probe): skip the missed ticks instead of bursting
                next_t = time.perf_counter()
                wait_s = 0.0
            self._stop.wait(wait_s)

    @property
    def oldest_t_s(self) -> float | None:
        with self._lock:
            return self._buffer[0][0] if self._buffer else None

    def _between(self, t0_s: float, t1_s: float, extra: int = 0) -> list[StoredSample]:
        """Samples with t0_s ≤ t ≤ t1_s, plus `extra` probes' worth of rows on either side."""
        with self._lock:
            rows = list(self._buffer)
        lo = bisect.bisect_left(rows, t0_s, key=lambda r: r[0])
        hi = bisect.bisect_right(rows, t1_s, key=lambda r: r[0])
        return rows[max(0, lo - extra):hi + extra]

    def samples(self, t0_s: float, t1_s: float, domain: str | None = None) -> list[StoredSample]:
        """Stored samples with t0_s ≤ t ≤ t1_s (of one domain, or all), in time order."""
        return [r for r in self._between(t0_s, t1_s) if domain is None or r[1] == domain]

    def power_series(self, domain: str, t0_s: float, t1_s: float,
                     n_domains: int = 1) -> tuple[list[float], list[float]]:
        """(t_s, power_w) of one domain inside the window plus the nearest sample on either side of it.

        `n_domains` is how many rows each probe stores, so one probe's worth either side is looked at.
        """
        rows = [(r[0], r[2]) for r in self._between(t0_s, t1_s, extra=n_domains) if r[1] == domain]
        before = [r for r in rows if r[0] < t0_s][-1:]
        inside = [r for r in rows if t0_s <= r[0] <= t1_s]
        after = [r for r in rows if r[0] > t1_s][:1]
        chosen = before + inside + after
        return [r[0] for r in chosen], [r[1] for r in chosen]
