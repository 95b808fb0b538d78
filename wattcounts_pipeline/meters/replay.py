"""Replays a recorded power trace as if it were a live meter, so CI runs the pipeline on real GPU data.

A trace is JSON lines (an optional first line `{"meta": {...}}`, then one sample per line) or CSV with a
header; the columns are t_s, domain, power_w and optionally temperature_c, sm_clock_mhz and energy_j
(the device's energy counter, relative to the first sample). Windows map onto trace time through a clock:
by default real elapsed time × `speed`, or a `ManualClock` that moves only when told (deterministic tests).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading, PowerSample

TRACE_COLUMNS = ("t_s", "domain", "power_w", "temperature_c", "sm_clock_mhz", "energy_j")


def _float_or_nan(value: Any) -> float:
    return math.nan if value is None or value == "" else float(value)


@dataclass(frozen=True)
class DomainTrace:
    """One domain's samples as arrays; NaN marks a field the recording did not have."""

    t_s: np.ndarray
    power_w: np.ndarray
    temperature_c: np.ndarray
    sm_clock_mhz: np.ndarray
    energy_j: np.ndarray

    @property
    def has_counter(self) -> bool:
        return bool(np.all(np.isfinite(self.energy_j)))

    def cumulative_energy_j(self, t_s: float) -> float:
        """Energy from the trace's first sample to `t_s`: the counter where recorded, else integrated power."""
        if self.has_counter:
            return float(np.interp(t_s, self.t_s, self.energy_j - self.energy_j[0]))
        steps = (self.power_w[1:] + self.power_w[:-1]) * 0.5 * np.diff(self.t_s)
        return float(np.interp(t_s, self.t_s, np.concatenate(([0.0], np.cumsum(steps)))))


@dataclass(frozen=True)
class Trace:
    """A recording: its metadata (card, driver, workload) and one DomainTrace per domain."""

    domains: dict[str, DomainTrace]
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def start_s(self) -> float:
        return min(float(d.t_s[0]) for d in self.domains.values())

    @property
    def end_s(self) -> float:
        return max(float(d.t_s[-1]) for d in self.domains.values())

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _trace_from_rows(rows: list[dict[str, Any]], meta: dict[str, Any], source: str) -> Trace:
    if not rows:
        raise MeterError(f"trace {source} holds no samples")
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_domain.setdefault(str(row["domain"]), []).append(row)
    domains: dict[str, DomainTrace] = {}
    for name, domain_rows in by_domain.items():
        domain_rows.sort(key=lambda r: float(r["t_s"]))
        columns = {c: np.array([_float_or_nan(r.get(c)) for r in domain_rows]) for c in TRACE_COLUMNS if c != "domain"}
        if not np.all(np.isfinite(columns["t_s"])) or not np.all(np.isfinite(columns["power_w"])):
            raise MeterError(f"trace {source}: domain {name!r} has a sample without t_s or power_w")
        domains[name] = DomainTrace(**columns)
    return Trace(domains=domains, meta=meta, source=source)


def load_trace(path: str | Path) -> Trace:
    """Read a .jsonl or .csv trace; the message names the file and line when a row is malformed."""
    path = Path(path)
    meta: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    try:
        if path.suffix == ".csv":
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        else:
            for line_no, line in enumerate(path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MeterError(f"trace {path}, line {line_no}: not JSON ({exc.msg})") from exc
                if "meta" in record:
                    meta.update(record["meta"])
                else:
                    rows.append(record)
    except OSError as exc:
        raise MeterError(f"cannot read trace {path}: {exc.strerror or exc}") from exc
    missing = [c for c in ("t_s", "domain", "power_w") if rows and c not in rows[0]]
    if missing:
        raise MeterError(f"trace {path} lacks column(s) {missing}; expected {TRACE_COLUMNS}")
    return _trace_from_rows(rows, meta, str(path))


def write_trace(path: str | Path, samples: Iterable[PowerSample], meta: dict[str, Any] | None = None) -> int:
    """Write samples as a JSON-lines trace; energy_j is made relative to each domain's first sample.

    Values are rounded to what the sensors resolve (ms, 10 mW, mJ) to keep fixtures small. Returns the count.
    """
    first_energy_j: dict[str, float] = {}
    count = 0
    with Path(path).open("w") as handle:
        if meta:
            handle.write(json.dumps({"meta": meta}) + "\n")
        for s in samples:
            record: dict[str, Any] = {"t_s": round(s.t_s, 4), "domain": s.domain, "power_w": round(s.power_w, 2)}
            if s.temperature_c is not None:
                record["temperature_c"] = s.temperature_c
            if s.sm_clock_mhz is not None:
                record["sm_clock_mhz"] = s.sm_clock_mhz
            if s.energy_j is not None:
                record["energy_j"] = round(s.energy_j - first_energy_j.setdefault(s.domain, s.energy_j), 3)
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


class ManualClock:
    """Trace seconds that pass only through `sleep`/`advance`, so replayed windows are deterministic."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, duration_s: float) -> None:
        if duration_s < 0:
            raise ValueError(f"a clock cannot go back ({duration_s} s)")
        self.now_s += duration_s

    sleep = advance  # drop-in for time.sleep in the protocol helpers


class _ScaledClock:
    """Real elapsed time since construction × speed."""

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        self.speed = speed
        self._t0 = time.perf_counter()

    def __call__(self) -> float:
        return (time.perf_counter() - self._t0) * self.speed


class ReplayMeter(EnergyMeter):
    """Energy and samples of a recorded trace over windows of trace time.

    `clock()` gives seconds elapsed since the trace's start. Past the end the meter raises, unless
    `loop` is set, in which case the trace repeats (energy adds whole laps).
    """

    method = "replay"

    def __init__(self, trace: Trace | str | Path, clock: Callable[[], float] | None = None, speed: float = 1.0,
                 loop: bool = False) -> None:
        super().__init__()
        self.trace = trace if isinstance(trace, Trace) else load_trace(trace)
        self.clock = clock or _ScaledClock(speed)
        self.loop = loop
        if self.trace.duration_s <= 0:
            raise MeterError(f"trace {self.trace.source} spans no time")

    def _now(self) -> float:
        return self.trace.start_s + self.clock()

    def _snapshot(self) -> float:
        return self._now()

    def _lap(self, t_s: float) -> tuple[int, float]:
        """(completed laps, position inside the trace) of an absolute trace time."""
        offset_s = t_s - self.trace.start_s
        if offset_s <= self.trace.duration_s or not self.loop:
            return 0, t_s
        laps = int(offset_s // self.trace.duration_s)
        return laps, self.trace.start_s + offset_s - laps * self.trace.duration_s

    def _energy_to(self, domain: DomainTrace, t_s: float) -> float:
        laps, position_s = self._lap(t_s)
        return laps * domain.cumulative_energy_j(self.trace.end_s) + domain.cumulative_energy_j(position_s)

    def _reading(self, key: str, duration_s: float, begin: float, end: float) -> EnergyReading:
        if end > self.trace.end_s + 1e-9 and not self.loop:
            raise MeterError(f"window {key!r} ends {end - self.trace.start_s:.2f} s into a "
                             f"{self.trace.duration_s:.2f} s trace ({self.trace.source}); use a longer trace, "
                             "a slower clock or loop=True")
        energy_j = {name: self._energy_to(d, end) - self._energy_to(d, begin) for name, d in self.trace.domains.items()}
        counted = all(d.has_counter for d in self.trace.domains.values())
        return EnergyReading(key=key, duration_s=duration_s, energy_j=energy_j, method=self.method,
                             flags=("replay", "replay_counter" if counted else "replay_power_integration"),
                             samples=self._samples(begin, end), device_info=self.describe())

    def _samples(self, begin: float, end: float) -> tuple[PowerSample, ...]:
        samples: list[PowerSample] = []
        first_lap, _ = self._lap(begin)
        last_lap, _ = self._lap(end)
        for lap in range(first_lap, last_lap + 1):
            shift_s = lap * self.trace.duration_s
            for name, d in self.trace.domains.items():
                inside = (d.t_s + shift_s >= begin) & (d.t_s + shift_s <= end)
                if lap > 0:
                    inside &= d.t_s > self.trace.start_s  # the lap's first sample repeats the last one
                for i in np.flatnonzero(inside):
                    samples.append(PowerSample(
                        t_s=float(d.t_s[i] + shift_s - begin), domain=name, power_w=float(d.power_w[i]),
                        temperature_c=_none_if_nan(d.temperature_c[i]), sm_clock_mhz=_none_if_nan(d.sm_clock_mhz[i]),
                        energy_j=_none_if_nan(d.energy_j[i])))
        samples.sort(key=lambda s: (s.t_s, s.domain))
        return tuple(samples)

    def describe(self) -> dict[str, Any]:
        """The trace's recorded metadata; `gpu_count` from its GPU domains where the recording left it out (rows
        need it to name the hardware)."""
        gpus = sum(name.startswith("gpu:") for name in self.trace.domains)
        return {"gpu_count": gpus, **self.trace.meta, "replay_source": Path(self.trace.source).name,
                "replay_loop": self.loop}

    def temperatures_c(self) -> dict[str, float]:
        _, position_s = self._lap(min(self._now(), self.trace.end_s) if not self.loop else self._now())
        temperatures: dict[str, float] = {}
        for name, d in self.trace.domains.items():
            known = np.isfinite(d.temperature_c)
            if known.any():
                temperatures[name] = float(np.interp(position_s, d.t_s[known], d.temperature_c[known]))
        return temperatures


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
