"""Energy through Zeus's device layer (PyPI `zeus`, ml-energy): NVIDIA and AMD GPUs, CPU RAPL, Apple Silicon
and Jetson behind one interface, with our measurement protocol on top.

Zeus gives the devices; the protocol stays ours: window edges read each device's cumulative energy counter, a
PowerSampler polls the GPUs' power between the edges (the trace, and the integrated energy kept beside the
counter as a cross-check), and a counter that is missing, reset, stalled or too coarse for a short window is
replaced by the integrated trace and flagged, exactly as in the NVML meter (`counter_problem`).

What Zeus's device layer cannot give, and where it comes from instead (NVIDIA only):
- SM and memory clocks (per sample and per row), GPU UUIDs, the driver and CUDA driver versions: Zeus's GPU
  class has no call for them, and validation requires clock and driver on every NVML row. They are read through
  our NVML device layer (`meters/nvml_device.py`), by the NVML index Zeus reports for each visible GPU.
On AMD they stay empty. Everything else (name, power limit, persistence, temperature, instantaneous and average
power, the energy counter) comes from Zeus. CPU and DRAM energy comes from Zeus's RAPL layer (which tracks
counter wrap-around in its own process); Apple Silicon and Jetson from Zeus's SoC layer (cumulative energy).

`energy_method` names the sensor, not the library: NVIDIA through Zeus is still `nvml_counter`; the rows say
Zeus measured in `software_json` and the meter's `describe()` (`meter_library`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading
from wattcounts_pipeline.meters.estimate import cpu_model_name
from wattcounts_pipeline.meters.nvml import (
    ADVISED_MIN_WINDOW_S,
    DEFAULT_MIN_COUNTER_WINDOW_S,
    counter_or_trace,
    trace_samples,
)
from wattcounts_pipeline.meters.sampler import DEFAULT_PERIOD_S, PowerSampler, ProbeRow

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Sensor names per GPU vendor: (counter method, integrated-power method).
GPU_METHODS = {"nvidia": ("nvml_counter", "nvml_power_integration"),
               "amd": ("amdsmi_counter", "amdsmi_power_integration")}
SOC_METHODS = {"apple": "apple_soc_counter", "jetson": "jetson_power_integration"}
# SoC measurement fields (mJ) that are disjoint parts of the chip, by our domain; sub-parts are left out.
SOC_FIELDS = {"apple": {"cpu:soc": "cpu_total_mj", "gpu:soc": "gpu_mj", "dram:soc": "dram_mj", "ane:soc": "ane_mj"},
              "jetson": {"soc:total": "total_energy_mj"}}


def zeus_version() -> str | None:
    try:
        return metadata.version("zeus")
    except metadata.PackageNotFoundError:
        return None


def _zeus_call(what: str, read: Callable[[], T]) -> T:
    """One Zeus device call; its exceptions become MeterErrors naming the call."""
    from zeus.exception import ZeusBaseError

    try:
        return read()
    except ZeusBaseError as exc:
        raise MeterError(f"Zeus: {what} failed: {exc}") from exc


def _optional(read: Callable[[], T]) -> T | None:
    """A capability this device may lack (Zeus raises its not-supported error, or the call is missing)."""
    from zeus.exception import ZeusBaseError

    try:
        return read()
    except (ZeusBaseError, NotImplementedError, MeterError):
        return None


def _vendor(gpus: Any) -> str:
    module = type(gpus).__module__
    return "amd" if ".amd" in module else "nvidia" if ".nvidia" in module else str(getattr(gpus, "vendor", "unknown"))


def _soc_kind(soc: Any) -> str:
    module = type(soc).__module__
    return "jetson" if "jetson" in module else "apple" if "apple" in module else str(getattr(soc, "kind", "unknown"))


def discover(cpu: bool = True) -> tuple[Any | None, Any | None, Any | None, list[str]]:
    """Zeus's GPU, CPU and SoC managers on this machine (None where absent) and why each is missing; `cpu=False`
    leaves RAPL alone (Zeus starts a wrap-around tracking process per counter when it opens them)."""
    zeus_logger = logging.getLogger("zeus")  # its import-time warnings repeat what `missing` says, less plainly
    level = zeus_logger.level
    zeus_logger.setLevel(logging.ERROR)
    try:
        return _discover(cpu)
    finally:
        zeus_logger.setLevel(level)


def _discover(cpu: bool) -> tuple[Any | None, Any | None, Any | None, list[str]]:
    from zeus.device import get_cpus, get_gpus, get_soc
    from zeus.exception import ZeusBaseError

    found: list[Any | None] = []
    missing: list[str] = []
    for what, get in (("GPU (NVML or AMDSMI)", get_gpus), ("CPU (RAPL)", get_cpus),
                      ("SoC (Apple Silicon or Jetson)", get_soc)):
        if what.startswith("CPU") and not cpu:
            found.append(None)
            continue
        try:
            manager = get()
            found.append(manager if what.startswith("SoC") or len(manager) else None)
            if found[-1] is None:
                missing.append(f"{what}: none visible")
        except (ZeusBaseError, ImportError, OSError) as exc:
            found.append(None)
            missing.append(f"{what}: {exc}")
    return found[0], found[1], found[2], missing


@dataclass(frozen=True)
class _Edge:
    t_s: float
    gpu_counter_j: dict[str, float | None]
    gpu_temperature_c: dict[str, float | None]
    other_j: dict[str, float]  # RAPL and SoC cumulative counters by domain


class ZeusMeter(EnergyMeter):
    """GPUs ("gpu:<visible index>"), CPU packages and DRAM ("cpu:package-N", "dram:package-N") or an SoC's parts,
    all through Zeus. `gpus`, `cpus`, `soc` take Zeus managers (default: what Zeus finds here); `gpu_count` keeps
    the first that many visible GPUs; `include_cpu=False` leaves RAPL out (GPU energy only, like the NVML meter)."""

    def __init__(self, gpus: Any | None = None, cpus: Any | None = None, soc: Any | None = None, *,
                 gpu_count: int | None = None, include_cpu: bool = True, sample_period_s: float = DEFAULT_PERIOD_S,
                 min_counter_window_s: float = DEFAULT_MIN_COUNTER_WINDOW_S, start_sampler: bool = True,
                 discover_devices: bool = True) -> None:
        super().__init__()
        if zeus_version() is None:
            raise MeterError("the Zeus meter needs the `zeus` package: pip install zeus==0.16.0")
        missing: list[str] = []
        if discover_devices and gpus is None and cpus is None and soc is None:
            gpus, cpus, soc, missing = discover()
        if not include_cpu:
            cpus = None
        gpu_list = list(gpus.gpus) if gpus is not None else []
        if gpu_count is not None:
            if len(gpu_list) < gpu_count:
                raise MeterError(f"{gpu_count} GPUs asked for, Zeus sees {len(gpu_list)}")
            gpu_list = gpu_list[:gpu_count]
        if not gpu_list and cpus is None and soc is None:
            raise MeterError("Zeus finds nothing to measure here: " + "; ".join(missing or ["no device given"]))
        self.vendor = _vendor(gpus) if gpu_list else ""
        self.gpus = gpu_list
        self.domains = [f"gpu:{i}" for i in range(len(gpu_list))]
        self.cpus = list(cpus.cpus) if cpus is not None else []
        self.soc = soc
        self.soc_kind = _soc_kind(soc) if soc is not None else ""
        self._nvml = self._nvml_devices() if self.vendor == "nvidia" else []
        self._has_counter = [bool(_optional(g.supports_get_total_energy_consumption)) for g in gpu_list]
        self._instant = [_optional(g.get_instant_power_usage) is not None for g in gpu_list]
        for domain, counter in zip(self.domains, self._has_counter, strict=True):
            if not counter:
                logger.warning("%s: Zeus reports no total-energy counter: energy will be integrated from power "
                               "samples", domain)
        if gpu_list:
            counter_method, integrated_method = GPU_METHODS.get(self.vendor, (f"{self.vendor}_counter",
                                                                              f"{self.vendor}_power_integration"))
        elif soc is not None:
            counter_method = integrated_method = SOC_METHODS.get(self.soc_kind, f"{self.soc_kind}_soc")
        else:
            counter_method = integrated_method = "rapl"
        self.method, self._integrated_method = counter_method, integrated_method
        self.min_counter_window_s = min_counter_window_s
        self.sampler = PowerSampler(self._probe, period_s=sample_period_s) if gpu_list else None
        self._closed = False
        if self.sampler is not None and start_sampler:
            self.sampler.start()

    def _nvml_devices(self) -> list[Any]:
        """Our NVML handles for what Zeus lacks (clocks, UUIDs, driver), by the NVML index Zeus uses."""
        from wattcounts_pipeline.meters import nvml_device

        nvml_device.init()
        return [nvml_device.NvmlDevice(int(g.gpu_index)) for g in self.gpus]

    # ------------------------------------------------------------ reads (Zeus: mJ, mW → J, W here)

    def _gpu_power_w(self, i: int) -> float:
        gpu = self.gpus[i]
        read = gpu.get_instant_power_usage if self._instant[i] else gpu.get_average_power_usage
        return float(_zeus_call(f"power of {self.domains[i]}", read)) / 1000.0

    def _gpu_counter_j(self, i: int) -> float | None:
        if not self._has_counter[i]:
            return None
        return float(_zeus_call(f"energy counter of {self.domains[i]}",
                                self.gpus[i].get_total_energy_consumption)) / 1000.0

    def _sm_clock_mhz(self, i: int) -> float | None:
        return float(clock) if self._nvml and (clock := _optional(self._nvml[i].sm_clock_mhz)) is not None else None

    def _probe(self) -> list[ProbeRow]:
        rows = []
        for i, domain in enumerate(self.domains):
            temperature = _optional(self.gpus[i].get_gpu_temperature)
            rows.append(ProbeRow(domain, self._gpu_power_w(i), None if temperature is None else float(temperature),
                                 self._sm_clock_mhz(i), self._gpu_counter_j(i)))
        return rows

    def _other_j(self) -> dict[str, float]:
        """RAPL packages and DRAM, and the SoC's parts: cumulative joules by domain."""
        out: dict[str, float] = {}
        for i, cpu in enumerate(self.cpus):
            reading = _zeus_call(f"RAPL package {i}", cpu.get_total_energy_consumption)
            out[f"cpu:package-{i}"] = float(reading.cpu_mj) / 1000.0
            if reading.dram_mj is not None:
                out[f"dram:package-{i}"] = float(reading.dram_mj) / 1000.0
        if self.soc is not None:
            reading = _zeus_call("SoC energy", self.soc.get_total_energy_consumption)
            fields = SOC_FIELDS.get(self.soc_kind, {})
            for domain, name in fields.items():
                value = getattr(reading, name, None)
                if value is not None:
                    out[domain] = float(value) / 1000.0
            if not fields:
                raise MeterError(f"Zeus SoC {type(self.soc).__name__}: no known energy fields")
        return out

    def _raise_sampler_error(self) -> None:
        if self.sampler is not None and self.sampler.error is not None:
            error = self.sampler.error
            raise error if isinstance(error, MeterError) else MeterError(f"the Zeus power sampler failed: {error}")

    # ------------------------------------------------------------ windows

    def _snapshot(self) -> _Edge:
        self._raise_sampler_error()
        if self.sampler is not None:
            t_s, rows = self.sampler.sample_now()
        else:
            t_s, rows = time.perf_counter(), []
        return _Edge(t_s, {r.domain: r.counter_energy_j for r in rows}, {r.domain: r.temperature_c for r in rows},
                     self._other_j())

    def _reading(self, key: str, duration_s: float, begin: _Edge, end: _Edge) -> EnergyReading:
        self._raise_sampler_error()
        flags: list[str] = []
        energy_j: dict[str, float] = {}
        integrated_j: dict[str, float] = {}
        fell_back = False
        if self.domains and end.t_s - begin.t_s < ADVISED_MIN_WINDOW_S:
            flags.append("short_window")
        if self.domains:
            assert self.sampler is not None
            window = counter_or_trace(key, self.domains, self.sampler, begin.t_s, end.t_s, begin.gpu_counter_j,
                                      end.gpu_counter_j, self.min_counter_window_s)
            energy_j, integrated_j, fell_back = dict(window.energy_j), window.integrated_j, window.fell_back
            flags += window.flags
        for domain, j1 in end.other_j.items():
            delta_j = j1 - begin.other_j.get(domain, j1)
            if delta_j < 0:
                flags.append(f"{domain}:counter_reset")
                delta_j = 0.0
            energy_j[domain] = delta_j
        info = self.describe()
        info["temperature_start_c"] = [begin.gpu_temperature_c.get(d) for d in self.domains]
        info["temperature_end_c"] = [end.gpu_temperature_c.get(d) for d in self.domains]
        return EnergyReading(key=key, duration_s=duration_s, energy_j=energy_j,
                             method=self._integrated_method if fell_back else self.method, flags=tuple(flags),
                             samples=trace_samples(self.sampler, begin.t_s, end.t_s), device_info=info,
                             integrated_energy_j=integrated_j)

    # ------------------------------------------------------------ description

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"meter_library": f"zeus {zeus_version()}", "cpu_model": cpu_model_name()}
        if self.cpus:
            info["rapl_domains"] = [f"cpu:package-{i}" for i in range(len(self.cpus))]
        if self.soc is not None:
            info["soc"] = self.soc_kind
        if not self.gpus:
            return info
        names = sorted({str(_zeus_call("GPU name", g.get_name)) for g in self.gpus})
        limit_mw = _optional(self.gpus[0].get_power_management_limit)
        temperature = _optional(self.gpus[0].get_gpu_temperature)
        info.update({
            "gpu_vendor": self.vendor, "gpu_name": names[0] if len(names) == 1 else " + ".join(names),
            "gpu_count": len(self.gpus), "power_limit_w": None if limit_mw is None else limit_mw / 1000.0,
            "persistence_mode": _optional(self.gpus[0].get_persistence_mode),
            "temperature_c": temperature, "energy_counter": all(self._has_counter),
            "power_field": "instant" if all(self._instant) else "average",
            "sample_period_s": self.sampler.period_s if self.sampler else None,
            "gpu_nvml_indices": [int(g.gpu_index) for g in self.gpus],
        })
        if self._nvml:  # what Zeus has no call for (see the module docstring)
            from wattcounts_pipeline.meters import nvml_device

            first = self._nvml[0]
            info.update({
                "gpu_uuids": [d.uuid() for d in self._nvml], "driver_version": nvml_device.driver_version(),
                "cuda_driver_version": nvml_device.cuda_driver_version(),
                "sm_clock_mhz": _optional(first.sm_clock_mhz), "mem_clock_mhz": _optional(first.mem_clock_mhz),
                "sm_clock_max_mhz": _optional(first.max_sm_clock_mhz),
                "mem_clock_max_mhz": _optional(first.max_mem_clock_mhz)})
        return info

    def temperatures_c(self) -> dict[str, float]:
        out = {}
        for domain, gpu in zip(self.domains, self.gpus, strict=True):
            temperature = _optional(gpu.get_gpu_temperature)
            if temperature is not None:
                out[domain] = float(temperature)
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.sampler is not None:
            self.sampler.stop()
        if self._nvml:
            from wattcounts_pipeline.meters import nvml_device

            nvml_device.shutdown()
