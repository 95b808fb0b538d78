"""GPU energy through NVML: the total-energy counter at the window edges, power samples in between.

The counter (Volta and newer) is the primary reading. The background sampler's instantaneous-power trace
is integrated for every window too: it is the cross-check beside the counter, and the reading itself where
the counter is missing, went backwards (driver reload), did not move, or the window is shorter than
`min_counter_window_s` (the counter updates only about every 100 ms). Each fallback is flagged.

Measured on an H200 under eager decode (benchmarks/meter_fidelity.py): counter and integrated trace agree
within 1.6 % on windows of 10 s and more, but differ by up to 6 % on 1 s windows, because the counter moves
in 100 ms steps and instantaneous power swings between ~120 and ~790 W within a second. Windows under
ADVISED_MIN_WINDOW_S are therefore flagged "short_window".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters import nvml_device
from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading, PowerSample
from wattcounts_pipeline.meters.nvml_device import NvmlDevice, NvmlNotSupported
from wattcounts_pipeline.meters.sampler import DEFAULT_PERIOD_S, PowerSampler, ProbeRow, integrate_energy_j

logger = logging.getLogger(__name__)

# The counter moves about every 100 ms, so its error is up to ~0.2 s of power over a window; below this
# length the integrated trace (which interpolates between samples) is the better number.
DEFAULT_MIN_COUNTER_WINDOW_S = 1.0
ADVISED_MIN_WINDOW_S = 10.0


@dataclass(frozen=True)
class _Edge:
    """A window edge: when, and each GPU's counter (None without one) and temperature."""

    t_s: float
    counter_j: dict[str, float | None]
    temperature_c: dict[str, float | None]


def counter_problem(key: str, domain: str, c0_j: float | None, c1_j: float | None, window_s: float,
                    min_counter_window_s: float) -> str:
    """Why a window's energy-counter difference cannot be the reading ("" when it can): the protocol every
    counter-and-trace meter (this one, the Zeus meter) applies; the integrated trace stands in and is flagged."""
    if c0_j is None or c1_j is None:
        return "no_counter"
    if c1_j < c0_j:
        logger.warning("window %r: %s energy counter went backwards (%.3f → %.3f J; driver reloaded?); "
                       "using integrated power", key, domain, c0_j, c1_j)
        return "counter_reset"
    if window_s < min_counter_window_s:
        return "short_window_integrated"
    if c1_j == c0_j:
        logger.warning("window %r: %s energy counter did not move in %.2f s; using integrated power",
                       key, domain, window_s)
        return "counter_stalled"
    return ""


@dataclass(frozen=True)
class CounterOrTrace:
    """One window's energy per GPU domain: the counter difference, or the integrated trace where the counter
    cannot be trusted (`counter_problem`), with both numbers kept and each fallback flagged."""

    energy_j: dict[str, float]
    integrated_j: dict[str, float]
    flags: list[str]
    fell_back: bool


def counter_or_trace(key: str, domains: Sequence[str], sampler: PowerSampler, begin_t_s: float, end_t_s: float,
                     begin_counter_j: dict[str, float | None], end_counter_j: dict[str, float | None],
                     min_counter_window_s: float) -> CounterOrTrace:
    """The protocol every counter-and-trace meter (this one, the Zeus meter) applies to one window."""
    energy_j: dict[str, float] = {}
    integrated_j: dict[str, float] = {}
    flags: list[str] = []
    for domain in domains:
        t_s, power_w = sampler.power_series(domain, begin_t_s, end_t_s, n_domains=len(domains))
        integrated_j[domain] = integrate_energy_j(t_s, power_w, begin_t_s, end_t_s)
        c0, c1 = begin_counter_j[domain], end_counter_j[domain]
        problem = counter_problem(key, domain, c0, c1, end_t_s - begin_t_s, min_counter_window_s)
        energy_j[domain] = integrated_j[domain] if problem else c1 - c0  # type: ignore[operator]
        if problem:
            flags.append(f"{domain}:{problem}")
    return CounterOrTrace(energy_j, integrated_j, flags, fell_back=bool(flags))


def trace_samples(sampler: PowerSampler | None, begin_t_s: float, end_t_s: float) -> tuple[PowerSample, ...]:
    """The sampler's rows inside the window, timed from its start."""
    rows = sampler.samples(begin_t_s, end_t_s) if sampler is not None else []
    return tuple(PowerSample(t_s=r[0] - begin_t_s, domain=r[1], power_w=r[2], temperature_c=r[3],
                             sm_clock_mhz=r[4], energy_j=r[5]) for r in rows)


class NvmlMeter(EnergyMeter):
    """Energy of the selected GPUs; domains are "gpu:<CUDA ordinal>".

    `devices` takes NVML indices or "GPU-…" UUIDs; by default the GPUs CUDA_VISIBLE_DEVICES leaves visible,
    or the first `gpu_count` of them (a 1-GPU configuration on a 4-GPU host must not sum 3 idle GPUs).
    """

    method = "nvml_counter"

    def __init__(self, devices: Sequence[int | str] | None = None, sample_period_s: float = DEFAULT_PERIOD_S,
                 min_counter_window_s: float = DEFAULT_MIN_COUNTER_WINDOW_S, start_sampler: bool = True,
                 gpu_count: int | None = None) -> None:
        super().__init__()
        nvml_device.init()
        try:
            selected = self._select(devices)
            if gpu_count is not None:
                if len(selected) < gpu_count:
                    raise MeterError(f"{gpu_count} GPUs asked for, {len(selected)} visible to measure")
                selected = selected[:gpu_count]
            self.devices = [NvmlDevice(i) for i in selected]
            if not self.devices:
                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                raise MeterError("NVML sees no GPU to measure" + (
                    f" (CUDA_VISIBLE_DEVICES={visible!r} hides them all)" if visible is not None else ""))
            self.domains = [f"gpu:{i}" for i in range(len(self.devices))]
            self._has_counter = [self._supports(d.total_energy_j) for d in self.devices]
            self._instant_power = [self._supports(d.power_instant_w) for d in self.devices]
            for domain, counter, instant in zip(self.domains, self._has_counter, self._instant_power, strict=True):
                if not counter:
                    logger.warning("%s has no total-energy counter: energy will be integrated from power samples",
                                   domain)
                if not instant:
                    logger.warning("%s has no instantaneous power field: the trace uses NVML's 1-second average",
                                   domain)
        except BaseException:
            nvml_device.shutdown()
            raise
        self.min_counter_window_s = min_counter_window_s
        self.sampler = PowerSampler(self._probe, period_s=sample_period_s)
        self._closed = False
        if start_sampler:
            self.sampler.start()

    @staticmethod
    def _select(devices: Sequence[int | str] | None) -> list[int]:
        uuids = [NvmlDevice(i).uuid() for i in range(nvml_device.device_count())]
        if devices is None:
            return nvml_device.resolve_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
        chosen: list[int] = []
        for device in devices:
            if isinstance(device, int) and 0 <= device < len(uuids):
                chosen.append(device)
            elif isinstance(device, str) and device in uuids:
                chosen.append(uuids.index(device))
            else:
                raise MeterError(f"no GPU {device!r}: NVML sees {len(uuids)} GPU(s) with UUIDs {uuids}")
        return chosen

    @staticmethod
    def _supports(read: Any) -> bool:
        try:
            read()
        except NvmlNotSupported:
            return False
        return True

    def _probe(self) -> list[ProbeRow]:
        rows: list[ProbeRow] = []
        for domain, device, counter, instant in zip(self.domains, self.devices, self._has_counter,
                                                     self._instant_power, strict=True):
            power_w = device.power_instant_w() if instant else device.power_average_w()
            rows.append(ProbeRow(domain, power_w, device.temperature_c(), device.sm_clock_mhz(),
                                 device.total_energy_j() if counter else None))
        return rows

    def _raise_sampler_error(self) -> None:
        if self.sampler.error is not None:
            error = self.sampler.error
            if isinstance(error, MeterError):
                raise error
            raise MeterError(f"the NVML power sampler failed: {error}") from error

    def _snapshot(self) -> _Edge:
        self._raise_sampler_error()
        t_s, rows = self.sampler.sample_now()
        return _Edge(t_s=t_s, counter_j={r.domain: r.counter_energy_j for r in rows},
                     temperature_c={r.domain: r.temperature_c for r in rows})

    def _reading(self, key: str, duration_s: float, begin: _Edge, end: _Edge) -> EnergyReading:
        self._raise_sampler_error()
        flags: list[str] = []
        if end.t_s - begin.t_s < ADVISED_MIN_WINDOW_S:
            flags.append("short_window")
        oldest_t_s = self.sampler.oldest_t_s
        if oldest_t_s is not None and oldest_t_s > begin.t_s:
            flags.append("samples_truncated")
        window = counter_or_trace(key, self.domains, self.sampler, begin.t_s, end.t_s, begin.counter_j,
                                  end.counter_j, self.min_counter_window_s)
        info = self.describe()
        info["temperature_start_c"] = [begin.temperature_c[d] for d in self.domains]
        info["temperature_end_c"] = [end.temperature_c[d] for d in self.domains]
        return EnergyReading(key=key, duration_s=duration_s, energy_j=window.energy_j,
                             method="nvml_power_integration" if window.fell_back else "nvml_counter",
                             flags=tuple(flags + window.flags), samples=trace_samples(self.sampler, begin.t_s, end.t_s),
                             device_info=info, integrated_energy_j=window.integrated_j)

    def describe(self) -> dict[str, Any]:
        gpus = [self._describe_device(d) for d in self.devices]
        first = gpus[0]
        names = sorted({g["name"] for g in gpus})
        return {
            "gpu_name": names[0] if len(names) == 1 else " + ".join(names),
            "gpu_count": len(gpus),
            "gpu_uuids": [g["uuid"] for g in gpus],
            "gpu_nvml_indices": [d.nvml_index for d in self.devices],
            "power_limit_w": first["power_limit_w"],
            "persistence_mode": first["persistence_mode"],
            "driver_version": nvml_device.driver_version(),
            "cuda_driver_version": nvml_device.cuda_driver_version(),
            "sm_clock_mhz": first["sm_clock_mhz"],
            "mem_clock_mhz": first["mem_clock_mhz"],
            "sm_clock_max_mhz": first["sm_clock_max_mhz"],
            "mem_clock_max_mhz": first["mem_clock_max_mhz"],
            "temperature_c": first["temperature_c"],
            "energy_counter": all(self._has_counter),
            "power_field": "instant" if all(self._instant_power) else "average",
            "sample_period_s": self.sampler.period_s,
            "gpus": gpus,
        }

    @staticmethod
    def _describe_device(device: NvmlDevice) -> dict[str, Any]:
        def optional(read: Any) -> Any:
            try:
                return read()
            except NvmlNotSupported:
                return None

        return {
            "name": device.name(),
            "uuid": device.uuid(),
            "power_limit_w": optional(device.power_limit_w),
            "persistence_mode": optional(device.persistence_mode),
            "sm_clock_mhz": optional(device.sm_clock_mhz),
            "mem_clock_mhz": optional(device.mem_clock_mhz),
            "sm_clock_max_mhz": optional(device.max_sm_clock_mhz),
            "mem_clock_max_mhz": optional(device.max_mem_clock_mhz),
            "temperature_c": optional(device.temperature_c),
        }

    def temperatures_c(self) -> dict[str, float]:
        return {domain: device.temperature_c() for domain, device in zip(self.domains, self.devices, strict=True)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.sampler.stop()
        nvml_device.shutdown()
