"""Host fingerprint: CPU set ranges, clock from cpufreq or cpuinfo, a calibration that measures something."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wattcounts_pipeline.meters import host


def test_cpu_set_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 8, 10, 11})
    assert host.cpu_set() == "0-3,8,10-11"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5})
    assert host.cpu_set() == "5"


def test_cpu_mhz_prefers_cpufreq_then_cpuinfo(tmp_path: Path) -> None:
    assert host.cpu_mhz(tmp_path) is None
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor : 0\ncpu MHz\t\t: 2000.5\nprocessor : 1\ncpu MHz : 2001.5\n")
    assert host.cpu_mhz(tmp_path) == 2001.0
    freq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    freq.mkdir(parents=True)
    (freq / "cpuinfo_max_freq").write_text("3500000\n")
    assert host.cpu_mhz(tmp_path) == 3500.0


def test_calibration_is_positive_and_cached() -> None:
    first = host.calibration_ns()
    assert 0.1 < first < 10_000  # ns per loop iteration on any machine that runs the suite
    assert host.calibration_ns() == first
