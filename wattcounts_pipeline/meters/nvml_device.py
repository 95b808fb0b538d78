"""The NVML device layer: one method per capability, unit conversion at this boundary, errors mapped.

Everything NVML hands back in milliwatts or millijoules becomes watts or joules here and nowhere else.
Every `pynvml.NVMLError` becomes a `MeterError` whose message says what to do; a missing capability
becomes `NvmlNotSupported` so callers can fall back (energy counter → power integration).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from wattcounts_pipeline.core.errors import MeterError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# NVML return codes (nvml.h), kept here so the mapping does not need pynvml to be importable.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_UNKNOWN = 999

_ADVICE = {
    NVML_ERROR_LIBRARY_NOT_FOUND: "the NVML library (libnvidia-ml.so.1) was not found: this machine has no NVIDIA "
                                  "driver installed, or the library is not on the loader path",
    NVML_ERROR_DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded: no GPU is present, or the driver is "
                                  "not running (check `nvidia-smi`)",
    NVML_ERROR_NO_PERMISSION: "permission denied: this user may not query the GPU (check access to /dev/nvidia*)",
    NVML_ERROR_GPU_IS_LOST: "the GPU is lost (fell off the bus or stopped answering) — this run cannot be "
                            "measured; check `dmesg` and `nvidia-smi`",
    NVML_ERROR_RESET_REQUIRED: "the GPU needs a reset or a reboot before it can be used again",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "the NVML library and the kernel driver are different versions "
                                        "(driver updated without a reboot?)",
    NVML_ERROR_UNINITIALIZED: "NVML is not initialised (it was shut down, or init failed)",
    NVML_ERROR_NOT_FOUND: "no such GPU",
    NVML_ERROR_GPU_NOT_FOUND: "no such GPU",
    NVML_ERROR_TIMEOUT: "the GPU did not answer in time",
    NVML_ERROR_FUNCTION_NOT_FOUND: "the installed driver is too old for this NVML call",
    NVML_ERROR_NOT_SUPPORTED: "not supported on this GPU",
}


class NvmlNotSupported(MeterError):
    """The GPU lacks this capability (e.g. the total-energy counter before Volta)."""


class NvmlGpuLost(MeterError):
    """The GPU stopped answering mid-run; readings after this are meaningless."""


def nvml_error(code: int | None, what: str, detail: str = "") -> MeterError:
    """The MeterError for NVML return code `code` while doing `what`."""
    advice = _ADVICE.get(code) if code is not None else None
    text = f"NVML {what} failed: {advice or detail or 'unknown error'} (NVML error {code})"
    if code == NVML_ERROR_NOT_SUPPORTED:
        return NvmlNotSupported(text)
    if code in (NVML_ERROR_GPU_IS_LOST, NVML_ERROR_RESET_REQUIRED):
        return NvmlGpuLost(text)
    return MeterError(text)


def pynvml_module() -> ModuleType:
    """The official bindings (nvidia-ml-py), imported on first use so CPU-only installs never need them."""
    try:
        import pynvml
    except ImportError as exc:
        raise MeterError("NVML bindings are not installed: `pip install nvidia-ml-py` "
                         "(or the project's [gpu] extra)") from exc
    return pynvml


def call(what: str, fn: Callable[..., T], *args: Any) -> T:
    """Run one pynvml call, turning its NVMLError into a MeterError that names `what`."""
    pynvml = pynvml_module()
    try:
        return fn(*args)
    except pynvml.NVMLError as exc:
        raise nvml_error(getattr(exc, "value", None), what, str(exc)) from exc


def init() -> None:
    pynvml = pynvml_module()
    call("initialisation", pynvml.nvmlInit)


def shutdown() -> None:
    pynvml = pynvml_module()
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:  # shutting down a lost GPU must not hide the error that got us here
        logger.warning("NVML shutdown failed: %s", exc)


def device_count() -> int:
    pynvml = pynvml_module()
    return int(call("device count", pynvml.nvmlDeviceGetCount))


def gpu_present() -> bool:
    """Whether NVML sees at least one NVIDIA GPU here: no library, no driver or no permission all mean no."""
    try:
        init()
    except MeterError:
        return False
    try:
        return device_count() > 0
    except MeterError:
        return False
    finally:
        shutdown()


def driver_version() -> str:
    pynvml = pynvml_module()
    return str(call("driver version", pynvml.nvmlSystemGetDriverVersion))


def cuda_driver_version() -> str:
    """The CUDA version the driver supports, as "major.minor" (NVML gives 13000 for 13.0)."""
    pynvml = pynvml_module()
    version = int(call("CUDA driver version", pynvml.nvmlSystemGetCudaDriverVersion))
    return f"{version // 1000}.{version % 1000 // 10}"


class NvmlDevice:
    """One physical GPU, by its NVML index."""

    def __init__(self, nvml_index: int) -> None:
        self._pynvml = pynvml_module()
        self.nvml_index = nvml_index
        self.handle = call(f"handle of GPU {nvml_index}", self._pynvml.nvmlDeviceGetHandleByIndex, nvml_index)

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return call(f"{what} of GPU {self.nvml_index}", fn, self.handle, *args)

    def name(self) -> str:
        return str(self._call("name", self._pynvml.nvmlDeviceGetName))

    def uuid(self) -> str:
        """"GPU-…" identifier, the form CUDA_VISIBLE_DEVICES accepts."""
        return str(self._call("UUID", self._pynvml.nvmlDeviceGetUUID))

    def total_energy_j(self) -> float:
        """Joules since the driver loaded (NVML counts millijoules; Volta and newer)."""
        return self._call("total energy", self._pynvml.nvmlDeviceGetTotalEnergyConsumption) / 1000.0

    def power_instant_w(self) -> float:
        """Watts now, from the instantaneous power field (NVML gives milliwatts)."""
        values = self._call("instantaneous power", self._pynvml.nvmlDeviceGetFieldValues,
                            [self._pynvml.NVML_FI_DEV_POWER_INSTANT])
        if values[0].nvmlReturn != 0:
            raise nvml_error(int(values[0].nvmlReturn), f"instantaneous power of GPU {self.nvml_index}")
        return values[0].value.uiVal / 1000.0

    def power_average_w(self) -> float:
        """Watts averaged by the driver over about one second (NVML gives milliwatts)."""
        return self._call("power usage", self._pynvml.nvmlDeviceGetPowerUsage) / 1000.0

    def temperature_c(self) -> float:
        """Core temperature in °C."""
        return float(self._call("temperature", self._pynvml.nvmlDeviceGetTemperature,
                                self._pynvml.NVML_TEMPERATURE_GPU))

    def sm_clock_mhz(self) -> float:
        return float(self._call("SM clock", self._pynvml.nvmlDeviceGetClockInfo, self._pynvml.NVML_CLOCK_SM))

    def mem_clock_mhz(self) -> float:
        return float(self._call("memory clock", self._pynvml.nvmlDeviceGetClockInfo, self._pynvml.NVML_CLOCK_MEM))

    def max_sm_clock_mhz(self) -> float:
        return float(self._call("max SM clock", self._pynvml.nvmlDeviceGetMaxClockInfo, self._pynvml.NVML_CLOCK_SM))

    def max_mem_clock_mhz(self) -> float:
        return float(self._call("max memory clock", self._pynvml.nvmlDeviceGetMaxClockInfo,
                                self._pynvml.NVML_CLOCK_MEM))

    def power_limit_w(self) -> float:
        """The enforced power limit in watts (NVML gives milliwatts)."""
        return self._call("power limit", self._pynvml.nvmlDeviceGetEnforcedPowerLimit) / 1000.0

    def persistence_mode(self) -> bool:
        return bool(self._call("persistence mode", self._pynvml.nvmlDeviceGetPersistenceMode))


def resolve_visible(spec: str | None, uuids: Sequence[str]) -> list[int]:
    """NVML indices of the GPUs CUDA would use, in CUDA's order, for a CUDA_VISIBLE_DEVICES value.

    `uuids` lists every GPU's UUID in NVML order. Like CUDA, an entry may be an index or a (unique prefix
    of a) "GPU-…" UUID, and an invalid entry hides itself and every entry after it (logged here).
    MIG instances are refused: NVML's energy counter belongs to the whole physical GPU. Indices are read in
    NVML's (PCI bus) order, which CUDA follows under CUDA_DEVICE_ORDER=PCI_BUS_ID; with mixed GPU models and
    CUDA's default fastest-first order, name GPUs by UUID.
    """
    if spec is None:
        return list(range(len(uuids)))
    chosen: list[int] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            break
        if entry.startswith("MIG-"):
            raise MeterError(f"CUDA_VISIBLE_DEVICES names a MIG instance ({entry}): NVML measures whole GPUs "
                             "only, so per-instance energy cannot be attributed")
        if entry.isdigit() or (entry.startswith("-") and entry[1:].isdigit()):
            index = int(entry)
            found = index if 0 <= index < len(uuids) else None
        else:
            prefix = entry if entry.startswith("GPU-") else f"GPU-{entry}"
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(prefix)]
            found = matches[0] if len(matches) == 1 else None
        if found is None or found in chosen:
            logger.warning("CUDA_VISIBLE_DEVICES=%r: entry %r matches no single GPU; like CUDA, it and every "
                           "entry after it are ignored", spec, entry)
            break
        chosen.append(found)
    return chosen
