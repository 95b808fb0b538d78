"""Picks the best meter this machine offers, and says why each better one is missing.

Order: NVML (joined by RAPL for CPU/DRAM when that is readable too); else Zeus's device layer for the
accelerators only it reaches (AMD GPUs, Apple Silicon, Jetson; joined by RAPL); then RAPL, then the estimate.
NVIDIA stays on our NVML meter by default (Zeus reads the same counter, and the clocks, UUIDs and driver a row
needs come from NVML either way); `zeus` names the Zeus meter for every device, NVIDIA included.
A silent fall to the estimate would publish guesses as measurements, so every step down is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.base import EnergyMeter
from wattcounts_pipeline.meters.composite import CompositeMeter
from wattcounts_pipeline.meters.estimate import EstimateMeter
from wattcounts_pipeline.meters.nvml import NvmlMeter
from wattcounts_pipeline.meters.rapl import DEFAULT_RAPL_ROOT, RaplMeter
from wattcounts_pipeline.meters.replay import ReplayMeter

logger = logging.getLogger(__name__)

CHOICES = ("nvml", "zeus", "rapl", "estimate", "replay:<trace path>")


def build_meter(name: str, rapl_root: str | Path = DEFAULT_RAPL_ROOT, gpus: int | None = None) -> EnergyMeter:
    """The meter called `name` (one of CHOICES); raises MeterError saying why it cannot be had."""
    if name == "nvml":
        return NvmlMeter(gpu_count=gpus)
    if name == "zeus":
        from wattcounts_pipeline.meters.zeus import ZeusMeter

        return ZeusMeter(gpu_count=gpus)
    if name == "rapl":
        return RaplMeter(rapl_root)
    if name == "estimate":
        return EstimateMeter()
    if name.startswith("replay:"):
        return ReplayMeter(name.split(":", 1)[1])
    raise MeterError(f"unknown meter {name!r}; choose one of {CHOICES}")


def best_meter(prefer: str | None = None, rapl_root: str | Path = DEFAULT_RAPL_ROOT,
               gpus: int | None = None) -> EnergyMeter:
    """`prefer` names one meter and gets exactly it (or its error); None takes the best one available.

    `gpus` limits NVML to the first that many visible GPUs (None: all visible)."""
    if prefer is not None:
        return build_meter(prefer, rapl_root, gpus)
    gpu: EnergyMeter | None = None
    cpu: EnergyMeter | None = None
    try:
        gpu = NvmlMeter(gpu_count=gpus)
    except MeterError as exc:
        logger.warning("no GPU energy (NVML unavailable): %s", exc)
    if gpu is None:
        gpu = _zeus_accelerator(gpus)
    try:
        cpu = RaplMeter(rapl_root)
    except MeterError as exc:
        logger.warning("no CPU/DRAM energy (RAPL unavailable): %s", exc)
    if gpu is not None and cpu is not None:
        return CompositeMeter([gpu, cpu])
    if gpu is not None or cpu is not None:
        return gpu or cpu  # type: ignore[return-value]
    logger.warning("neither NVML nor RAPL is readable on this machine: falling back to the CPU-time estimate; "
                   "its rows carry energy_method='estimate'")
    return EstimateMeter()


def _zeus_accelerator(gpus: int | None) -> EnergyMeter | None:
    """A Zeus meter over what only Zeus reaches here (an AMD GPU, Apple Silicon, a Jetson), else None (logged)."""
    try:
        from wattcounts_pipeline.meters.zeus import ZeusMeter, discover, zeus_version
    except ImportError as exc:  # pragma: no cover - zeus is a dependency; a trimmed install may lack it
        logger.warning("no Zeus device layer (%s): AMD GPUs, Apple Silicon and Jetson cannot be measured", exc)
        return None
    if zeus_version() is None:
        logger.warning("zeus is not installed: AMD GPUs, Apple Silicon and Jetson cannot be measured "
                       "(pip install zeus==0.16.0)")
        return None
    found_gpus, _, soc, missing = discover(cpu=False)
    if found_gpus is None and soc is None:
        logger.warning("no accelerator through Zeus either: %s", "; ".join(m for m in missing if "RAPL" not in m))
        return None
    try:
        return ZeusMeter(found_gpus, None, soc, gpu_count=gpus, include_cpu=False, discover_devices=False)
    except MeterError as exc:
        logger.warning("Zeus found an accelerator but cannot measure it: %s", exc)
        return None
