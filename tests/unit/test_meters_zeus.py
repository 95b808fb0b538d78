"""The Zeus meter: our window protocol (counter at the edges, integrated trace beside it, flagged fallbacks) over
Zeus's device layer. No GPU, RAPL or SoC exists here, so the device managers are stand-ins shaped like Zeus's
(same method names and units: mW, mJ, °C; Zeus's own measurement classes and exceptions); what Zeus itself says on
this machine is tested for real."""

from __future__ import annotations

import time

import pytest
from zeus.device.cpu.common import CpuDramMeasurement
from zeus.device.gpu.common import ZeusGPULostError, ZeusGPUNotSupportedError
from zeus.device.soc.apple import AppleSiliconMeasurement

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.select import best_meter, build_meter
from wattcounts_pipeline.meters.zeus import ZeusMeter, discover

T0 = time.perf_counter()


def _elapsed_s() -> float:
    return time.perf_counter() - T0


class FakeGpu:
    """A GPU drawing `power_w` steadily: its energy counter (mJ) grows with the wall clock."""

    def __init__(self, index: int, power_w: float = 250.0, counter: bool = True, lost_after_s: float | None = None):
        self.gpu_index, self.power_w, self.counter, self.lost_after_s = index, power_w, counter, lost_after_s

    def supports_get_total_energy_consumption(self) -> bool:
        return self.counter

    def get_total_energy_consumption(self) -> int:
        if self.lost_after_s is not None and _elapsed_s() > self.lost_after_s:
            raise ZeusGPULostError("GPU is lost")
        if not self.counter:
            raise ZeusGPUNotSupportedError("no counter")
        return int(self.power_w * _elapsed_s() * 1000)

    def get_instant_power_usage(self) -> int:
        return int(self.power_w * 1000)

    def get_average_power_usage(self) -> int:
        return int(self.power_w * 1000)

    def get_gpu_temperature(self) -> int:
        return 51

    def get_name(self) -> str:
        return "AMD Instinct MI300X"

    def get_power_management_limit(self) -> int:
        return 750_000

    def get_persistence_mode(self) -> bool:
        raise ZeusGPUNotSupportedError("not on AMD")


class FakeGpus:
    vendor = "amd"

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus

    def __len__(self) -> int:
        return len(self.gpus)


class FakeCpu:
    def get_total_energy_consumption(self) -> CpuDramMeasurement:
        t = _elapsed_s()
        return CpuDramMeasurement(cpu_mj=80_000 * t, dram_mj=10_000 * t)


class FakeCpus:
    def __init__(self) -> None:
        self.cpus = [FakeCpu()]


class FakeAppleSoc:
    kind = "apple"

    def get_total_energy_consumption(self) -> AppleSiliconMeasurement:
        t = _elapsed_s()
        return AppleSiliconMeasurement(cpu_total_mj=int(5_000 * t), gpu_mj=int(12_000 * t), dram_mj=int(1_000 * t),
                                       ane_mj=0, efficiency_cores_mj=[int(1_000 * t)])


def _window(meter: ZeusMeter, seconds: float = 0.3, key: str = "w"):
    meter.begin_window(key)
    time.sleep(seconds)
    return meter.end_window(key)


def test_counter_reading_in_joules_with_the_trace_beside_it():
    meter = ZeusMeter(FakeGpus([FakeGpu(0, 250.0), FakeGpu(1, 100.0)]), discover_devices=False,
                      min_counter_window_s=0.1, sample_period_s=0.02)
    try:
        reading = _window(meter)
    finally:
        meter.close()
    assert reading.method == "amdsmi_counter"
    assert reading.energy_j["gpu:0"] == pytest.approx(250.0 * reading.duration_s, rel=0.05)  # mJ → J once
    assert reading.energy_j["gpu:1"] == pytest.approx(100.0 * reading.duration_s, rel=0.05)
    assert reading.integrated_energy_j["gpu:0"] == pytest.approx(reading.energy_j["gpu:0"], rel=0.05)
    assert "short_window" in reading.flags  # under the advised 10 s, as the NVML meter says
    assert {s.domain for s in reading.samples} == {"gpu:0", "gpu:1"} and reading.samples[0].power_w == 250.0
    info = reading.device_info
    assert info["gpu_name"] == "AMD Instinct MI300X" and info["power_limit_w"] == 750.0 and info["gpu_count"] == 2
    assert info["persistence_mode"] is None and info["meter_library"].startswith("zeus ")
    assert info["temperature_start_c"] == [51, 51]


def test_no_counter_falls_back_to_the_integrated_trace_and_says_so():
    meter = ZeusMeter(FakeGpus([FakeGpu(0, 300.0, counter=False)]), discover_devices=False, sample_period_s=0.02)
    try:
        reading = _window(meter)
    finally:
        meter.close()
    assert reading.method == "amdsmi_power_integration"
    assert "gpu:0:no_counter" in reading.flags
    assert reading.energy_j["gpu:0"] == pytest.approx(300.0 * reading.duration_s, rel=0.05)


def test_a_window_shorter_than_the_counter_resolution_is_integrated():
    meter = ZeusMeter(FakeGpus([FakeGpu(0)]), discover_devices=False, min_counter_window_s=5.0, sample_period_s=0.02)
    try:
        reading = _window(meter, 0.1)
    finally:
        meter.close()
    assert "gpu:0:short_window_integrated" in reading.flags and reading.method == "amdsmi_power_integration"


def test_rapl_through_zeus_gives_package_and_dram_domains():
    meter = ZeusMeter(None, FakeCpus(), discover_devices=False)
    try:
        reading = _window(meter)
    finally:
        meter.close()
    assert reading.method == "rapl" and meter.sampler is None
    assert reading.energy_j["cpu:package-0"] == pytest.approx(80.0 * reading.duration_s, rel=0.05)
    assert reading.energy_j["dram:package-0"] == pytest.approx(10.0 * reading.duration_s, rel=0.05)
    assert reading.domain_energy_j("cpu") == reading.energy_j["cpu:package-0"]


def test_gpus_with_rapl_sum_disjoint_domains_and_include_cpu_false_leaves_rapl_out():
    both = ZeusMeter(FakeGpus([FakeGpu(0, 200.0)]), FakeCpus(), discover_devices=False, sample_period_s=0.02)
    gpu_only = ZeusMeter(FakeGpus([FakeGpu(0, 200.0)]), FakeCpus(), include_cpu=False, discover_devices=False)
    try:
        reading = _window(both)
        assert set(reading.energy_j) == {"gpu:0", "cpu:package-0", "dram:package-0"}
        assert reading.total_energy_j == pytest.approx(290.0 * reading.duration_s, rel=0.05)
        assert set(_window(gpu_only).energy_j) == {"gpu:0"}
    finally:
        both.close()
        gpu_only.close()


def test_apple_silicon_parts_without_double_counting_the_cores():
    meter = ZeusMeter(None, None, FakeAppleSoc(), discover_devices=False)
    try:
        reading = _window(meter)
    finally:
        meter.close()
    assert reading.method == "apple_soc_counter"
    assert set(reading.energy_j) == {"cpu:soc", "gpu:soc", "dram:soc", "ane:soc"}  # per-core parts left out
    assert reading.energy_j["gpu:soc"] == pytest.approx(12.0 * reading.duration_s, rel=0.1)


def test_a_lost_gpu_fails_the_window_by_name():
    meter = ZeusMeter(FakeGpus([FakeGpu(0, lost_after_s=_elapsed_s() + 0.15)]), discover_devices=False,
                      sample_period_s=0.02)
    try:
        meter.begin_window("w")
        time.sleep(0.4)
        with pytest.raises(MeterError, match="GPU is lost"):
            meter.end_window("w")
    finally:
        meter.close()


def test_first_gpus_only_and_too_many_refused():
    meter = ZeusMeter(FakeGpus([FakeGpu(0), FakeGpu(1)]), gpu_count=1, discover_devices=False, start_sampler=False)
    assert meter.domains == ["gpu:0"]
    meter.close()
    with pytest.raises(MeterError, match="3 GPUs asked for, Zeus sees 2"):
        ZeusMeter(FakeGpus([FakeGpu(0), FakeGpu(1)]), gpu_count=3, discover_devices=False)


def test_this_machine_has_nothing_zeus_can_measure_and_says_why():
    """Real Zeus on this CPU host: no NVML, no AMD SMI, no RAPL, no SoC."""
    gpus, cpus, soc, missing = discover()
    assert (gpus, cpus, soc) == (None, None, None)
    assert any("NVML and AMDSMI unavailable" in m for m in missing) and any("RAPL" in m for m in missing)
    with pytest.raises(MeterError, match="Zeus finds nothing to measure here: GPU"):
        build_meter("zeus")
    assert best_meter().method == "estimate"  # the auto choice falls through Zeus to the estimate, logged
