"""Fallback meter when no sensor exists: busy CPU time × the TDP share of one logical CPU.

It is an estimate and says so: every reading carries method "estimate". Busy time is read system-wide
from /proc/stat, so work done in server subprocesses is counted too.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading

DEFAULT_TDP_W_PER_CPU = 10.0  # a conservative server-class share; override with WATTCOUNTS_CPU_TDP_W


def _busy_cpu_s(stat_path: Path) -> float:
    """Seconds of non-idle CPU time summed over all CPUs since boot."""
    fields = stat_path.read_text().splitlines()[0].split()[1:]
    jiffies = [int(x) for x in fields[:8]]
    idle = jiffies[3] + jiffies[4]  # idle + iowait
    return (sum(jiffies) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware_id(device_info: dict[str, Any]) -> str:
    """The machine a row was measured on, as every row names it: `<n>x <GPU>` from a meter's `describe()`, else
    `<CPU model> (<n> CPUs)`. Configurations measured on two machines are told apart by it."""
    if device_info.get("gpu_name"):
        return f"{device_info['gpu_count']}x {device_info['gpu_name']}"
    return f"{cpu_model_name()} ({os.cpu_count() or 1} CPUs)"


class EstimateMeter(EnergyMeter):
    """CPU time × TDP/n_cpus. Used only when neither NVML nor RAPL is readable."""

    method = "estimate"

    def __init__(self, tdp_w: float | None = None, stat_path: str | Path = "/proc/stat") -> None:
        super().__init__()
        self.n_cpus = os.cpu_count() or 1
        env_tdp = os.environ.get("WATTCOUNTS_CPU_TDP_W")
        self.tdp_w = float(tdp_w or env_tdp or DEFAULT_TDP_W_PER_CPU * self.n_cpus)
        self.stat_path = Path(stat_path)

    def _snapshot(self) -> float:
        return _busy_cpu_s(self.stat_path)

    def _reading(self, key: str, duration_s: float, begin: float, end: float) -> EnergyReading:
        busy_s = max(0.0, end - begin)
        energy_j = busy_s * self.tdp_w / self.n_cpus
        return EnergyReading(key=key, duration_s=duration_s, energy_j={"cpu:estimate": energy_j},
                             method=self.method, flags=("estimate",), device_info=self.describe())

    def describe(self) -> dict[str, Any]:
        return {"cpu_model": cpu_model_name(), "cpu_count": self.n_cpus, "cpu_tdp_w": self.tdp_w}
