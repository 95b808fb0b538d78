"""Meter selection and composition: the best available meter, and why the better ones are missing."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from test_meters_nvml import REAL_GPU, FakeGpu, FakeNvml, install_fake_nvml
from test_meters_rapl import write_zone

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.composite import CompositeMeter
from wattcounts_pipeline.meters.estimate import EstimateMeter
from wattcounts_pipeline.meters.nvml import NvmlMeter
from wattcounts_pipeline.meters.rapl import RaplMeter
from wattcounts_pipeline.meters.select import best_meter


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0", 0)
    write_zone(root / "intel-rapl:0:0", "dram", 0)
    return root


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    gpu = FakeGpu("GPU-feed")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    install_fake_nvml(monkeypatch, FakeNvml([gpu]))
    return gpu


def test_gpu_and_rapl_together_give_one_reading(fake_gpu: FakeGpu, powercap: Path) -> None:
    with best_meter(rapl_root=powercap) as meter:
        assert isinstance(meter, CompositeMeter)
        assert meter.method == "nvml_counter"
        meter.begin_window("w")
        (powercap / "intel-rapl:0" / "energy_uj").write_text("40000000\n")  # +40 J
        time.sleep(1.1)
        reading = meter.end_window("w")
        assert set(meter.temperatures_c()) == {"gpu:0"}
    assert set(reading.energy_j) == {"gpu:0", "cpu:package-0", "dram:package-0"}
    assert reading.domain_energy_j("cpu") == pytest.approx(40.0)
    assert reading.total_energy_j == pytest.approx(reading.energy_j["gpu:0"] + 40.0)
    assert reading.device_info["methods"] == {"gpu:0": "nvml_counter", "cpu:package-0": "rapl",
                                              "dram:package-0": "rapl"}
    assert reading.device_info["gpu_name"] and reading.device_info["rapl_domains"]
    assert set(reading.integrated_energy_j) == {"gpu:0"}
    assert reading.samples


def test_gpu_without_rapl_says_why(fake_gpu: FakeGpu, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        meter = best_meter(rapl_root=tmp_path / "none")
    try:
        assert isinstance(meter, NvmlMeter)
    finally:
        meter.close()
    assert "RAPL unavailable" in caplog.text and "NVML unavailable" not in caplog.text


@pytest.mark.skipif(REAL_GPU, reason="this machine has a working NVIDIA driver")
def test_rapl_without_gpu_says_why(powercap: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        meter = best_meter(rapl_root=powercap)
    assert isinstance(meter, RaplMeter)
    assert "NVML unavailable" in caplog.text and "libnvidia-ml.so.1" in caplog.text


def test_a_preferred_meter_is_exactly_that_or_an_error(tmp_path: Path, powercap: Path) -> None:
    assert isinstance(best_meter("estimate"), EstimateMeter)
    assert isinstance(best_meter("rapl", rapl_root=powercap), RaplMeter)
    with pytest.raises(MeterError, match="does not exist"):
        best_meter("rapl", rapl_root=tmp_path / "none")


def test_composite_refuses_overlapping_domains(powercap: Path) -> None:
    meter = CompositeMeter([RaplMeter(powercap), RaplMeter(powercap)])
    meter.begin_window("w")
    with pytest.raises(MeterError, match="double-count"):
        meter.end_window("w")
    with pytest.raises(MeterError):
        CompositeMeter([])
