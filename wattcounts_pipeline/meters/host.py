"""The host a measurement ran on, beyond its GPU: which CPUs it could use, their clock, and a calibration.

Eager decode and server-side batching are bound by the host CPU, and lent GPU hosts that all report
"Intel(R) Xeon(R) Processor" differ by 25-65% there. A row that records only the card hides that, so every
run row carries the CPU set, the clock where the OS shows it, and the time of one fixed single-thread task
measured once per process: rows from two hosts can then be compared, and the predictor can see the host.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from pathlib import Path

CALIBRATION_LOOP = 200_000  # iterations of the reference loop; ~10 ms on a current server core


def cpu_set() -> str:
    """The CPUs this process may run on, as ranges ("0-15", "0-3,8-11"): pinning shows here."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    ranges: list[str] = []
    start = prev = cpus[0]
    for cpu in cpus[1:] + [None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(ranges)


def cpu_mhz(root: Path = Path("/")) -> float | None:
    """Maximum clock of CPU 0 in MHz from cpufreq, else the mean "cpu MHz" of /proc/cpuinfo, else None."""
    try:
        return int((root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000.0
    except (OSError, ValueError):
        pass
    try:
        lines = (root / "proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    values = [float(line.split(":", 1)[1]) for line in lines if line.startswith("cpu MHz")]
    return round(statistics.fmean(values), 1) if values else None


def _reference_task() -> int:
    total = 0
    for i in range(CALIBRATION_LOOP):
        total += i * i & 0xFF
    return total


@functools.cache
def calibration_ns() -> float:
    """Median nanoseconds per iteration of a fixed pure-Python loop (7 runs after one warm-up), once per
    process: single-thread host speed, which bounds kernel-launching and HTTP-serving loops."""
    _reference_task()
    times = []
    for _ in range(7):
        t0 = time.perf_counter_ns()
        _reference_task()
        times.append((time.perf_counter_ns() - t0) / CALIBRATION_LOOP)
    return round(statistics.median(times), 3)
