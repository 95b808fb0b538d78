"""NVML meter: the real "no driver" path on this machine, and the meter's logic over a fake NVML library.

The fake replaces pynvml's functions (not our code): a GPU drawing constant power whose energy counter
moves in 100 ms steps like the real one, and which can lose its counter, reset it or fall off the bus.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters import nvml_device
from wattcounts_pipeline.meters.estimate import EstimateMeter
from wattcounts_pipeline.meters.nvml import NvmlMeter
from wattcounts_pipeline.meters.nvml_device import NvmlGpuLost, NvmlNotSupported, nvml_error, resolve_visible
from wattcounts_pipeline.meters.select import best_meter

pynvml = pytest.importorskip("pynvml")


def _real_nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


REAL_GPU = _real_nvml_works()


@dataclass
class FakeGpu:
    uuid: str
    power_w: float = 300.0
    has_counter: bool = True
    has_instant: bool = True
    counter_offset_j: float = 5000.0
    lost: bool = False
    temperature_c: float = 41.0
    counter_period_s: float = 0.1
    t0_s: float = field(default_factory=time.perf_counter)

    def check(self) -> None:
        if self.lost:
            raise pynvml.NVMLError(nvml_device.NVML_ERROR_GPU_IS_LOST)

    def energy_mj(self) -> int:
        self.check()
        if not self.has_counter:
            raise pynvml.NVMLError(nvml_device.NVML_ERROR_NOT_SUPPORTED)
        steps = math.floor((time.perf_counter() - self.t0_s) / self.counter_period_s)
        return int((self.counter_offset_j + self.power_w * steps * self.counter_period_s) * 1000)


@dataclass
class FakeNvml:
    """Which errors the library gives and which GPUs it has."""

    gpus: list[FakeGpu]
    init_error: int | None = None


def install_fake_nvml(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> None:
    def init() -> None:
        if fake.init_error is not None:
            raise pynvml.NVMLError(fake.init_error)

    def field_values(gpu: FakeGpu, ids: list[int]) -> list[Any]:
        gpu.check()
        ret = 0 if gpu.has_instant else nvml_device.NVML_ERROR_NOT_SUPPORTED
        return [SimpleNamespace(nvmlReturn=ret, value=SimpleNamespace(uiVal=int(gpu.power_w * 1000)))]

    def checked(value: Any) -> Any:
        def read(gpu: FakeGpu, *args: Any) -> Any:
            gpu.check()
            return value(gpu) if callable(value) else value
        return read

    patches = {
        "nvmlInit": init,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: len(fake.gpus),
        "nvmlDeviceGetHandleByIndex": lambda i: fake.gpus[i],
        "nvmlDeviceGetUUID": checked(lambda g: g.uuid),
        "nvmlDeviceGetName": checked("NVIDIA Fake H100"),
        "nvmlDeviceGetTotalEnergyConsumption": lambda g: g.energy_mj(),
        "nvmlDeviceGetFieldValues": field_values,
        "nvmlDeviceGetPowerUsage": checked(lambda g: int(g.power_w * 1000)),
        "nvmlDeviceGetTemperature": checked(lambda g: g.temperature_c),
        "nvmlDeviceGetClockInfo": checked(1980),
        "nvmlDeviceGetMaxClockInfo": checked(1980),
        "nvmlDeviceGetEnforcedPowerLimit": checked(700_000),
        "nvmlDeviceGetPersistenceMode": checked(1),
        "nvmlSystemGetDriverVersion": lambda: "580.159.04",
        "nvmlSystemGetCudaDriverVersion": lambda: 13000,
    }
    for name, fn in patches.items():
        monkeypatch.setattr(pynvml, name, fn)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    gpu = FakeGpu(uuid="GPU-11111111-aaaa")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    install_fake_nvml(monkeypatch, FakeNvml([gpu]))
    return gpu


# --- the real library on this machine -------------------------------------------------------------------


@pytest.mark.skipif(REAL_GPU, reason="this machine has a working NVIDIA driver")
def test_no_driver_gives_a_clear_meter_error() -> None:
    with pytest.raises(MeterError) as info:
        NvmlMeter()
    message = str(info.value)
    assert "NVML" in message and ("libnvidia-ml.so.1" in message or "driver" in message)


@pytest.mark.skipif(REAL_GPU, reason="this machine has a working NVIDIA driver")
def test_best_meter_says_why_nvml_and_rapl_are_missing(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        meter = best_meter(rapl_root=tmp_path / "no-powercap")
    assert isinstance(meter, EstimateMeter)
    text = caplog.text
    assert "NVML unavailable" in text and "RAPL unavailable" in text and "no-powercap" in text
    assert "neither NVML nor RAPL" in text


@pytest.mark.skipif(not REAL_GPU, reason="needs an NVIDIA GPU")
def test_real_gpu_counter_and_trace() -> None:
    with NvmlMeter() as meter:
        meter.begin_window("w")
        time.sleep(1.2)
        reading = meter.end_window("w")
    assert reading.method == "nvml_counter"
    assert reading.total_energy_j > 0
    assert len(reading.samples) >= 10


def test_missing_bindings_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    with pytest.raises(MeterError, match="nvidia-ml-py"):
        NvmlMeter()


# --- error mapping and device selection (pure) ----------------------------------------------------------


@pytest.mark.parametrize(("code", "cls", "words"), [
    (nvml_device.NVML_ERROR_LIBRARY_NOT_FOUND, MeterError, "libnvidia-ml.so.1"),
    (nvml_device.NVML_ERROR_DRIVER_NOT_LOADED, MeterError, "driver is not loaded"),
    (nvml_device.NVML_ERROR_NO_PERMISSION, MeterError, "permission denied"),
    (nvml_device.NVML_ERROR_GPU_IS_LOST, NvmlGpuLost, "GPU is lost"),
    (nvml_device.NVML_ERROR_NOT_SUPPORTED, NvmlNotSupported, "not supported"),
    (777, MeterError, "odd"),
])
def test_nvml_error_codes_map_to_clear_errors(code: int, cls: type[MeterError], words: str) -> None:
    error = nvml_error(code, "total energy of GPU 0", detail="odd")
    assert isinstance(error, cls)
    assert words in str(error) and "total energy of GPU 0" in str(error) and f"error {code}" in str(error)


UUIDS = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-bbbc-2222"]


@pytest.mark.parametrize(("spec", "expected"), [
    (None, [0, 1, 2]),
    ("", []),
    ("2,0", [2, 0]),
    ("1, 7, 0", [1]),  # like CUDA: an invalid entry hides itself and all after it
    ("GPU-bbbc-2222", [2]),
    ("GPU-aaaa,2", [0, 2]),  # a unique UUID prefix is enough
    ("GPU-bbb", []),  # an ambiguous prefix matches nothing
    ("bbbb-1111", [1]),
    ("0,0", [0]),
])
def test_cuda_visible_devices_resolution(spec: str | None, expected: list[int]) -> None:
    assert resolve_visible(spec, UUIDS) == expected


def test_mig_instances_are_refused() -> None:
    with pytest.raises(MeterError, match="MIG"):
        resolve_visible("MIG-GPU-aaaa/1/0", UUIDS)


# --- the meter over the fake library --------------------------------------------------------------------


def test_counter_window_with_trace_and_description(one_gpu: FakeGpu) -> None:
    with NvmlMeter(sample_period_s=0.02) as meter:
        meter.begin_window("w")
        time.sleep(1.3)
        reading = meter.end_window("w")
        info = meter.describe()
    assert reading.method == "nvml_counter" and reading.flags == ("short_window",)
    # The counter moves in 0.1 s steps: at most one step of error at each edge.
    assert reading.energy_j["gpu:0"] == pytest.approx(300.0 * reading.duration_s, abs=2 * 300.0 * 0.1 + 1)
    assert reading.integrated_energy_j["gpu:0"] == pytest.approx(300.0 * reading.duration_s, rel=0.01)
    rate_hz = len(reading.samples) / reading.duration_s
    assert rate_hz >= 10
    assert all(0 <= s.t_s <= reading.duration_s + 1e-6 for s in reading.samples)
    assert {s.domain for s in reading.samples} == {"gpu:0"}
    assert reading.samples[0].temperature_c == 41.0 and reading.samples[0].sm_clock_mhz == 1980.0
    assert reading.device_info["temperature_start_c"] == [41.0]
    for key in ("gpu_name", "gpu_count", "power_limit_w", "persistence_mode", "driver_version",
                "cuda_driver_version", "sm_clock_mhz", "mem_clock_mhz", "temperature_c", "gpu_uuids"):
        assert info[key] is not None, key
    assert info["power_limit_w"] == 700.0 and info["cuda_driver_version"] == "13.0"
    assert info["gpu_uuids"] == ["GPU-11111111-aaaa"] and info["energy_counter"] is True


def test_without_counter_the_trace_is_integrated_and_said(one_gpu: FakeGpu, caplog: pytest.LogCaptureFixture) -> None:
    one_gpu.has_counter = False
    with caplog.at_level(logging.WARNING), NvmlMeter(sample_period_s=0.02) as meter:
        meter.begin_window("w")
        time.sleep(0.4)
        reading = meter.end_window("w")
    assert reading.method == "nvml_power_integration"
    assert "gpu:0:no_counter" in reading.flags
    assert reading.energy_j["gpu:0"] == pytest.approx(300.0 * reading.duration_s, rel=0.01)
    assert "no total-energy counter" in caplog.text


def test_without_instant_field_the_average_power_is_used(one_gpu: FakeGpu) -> None:
    one_gpu.has_instant = False
    with NvmlMeter(sample_period_s=0.02) as meter:
        assert meter.describe()["power_field"] == "average"
        meter.begin_window("w")
        time.sleep(0.2)
        reading = meter.end_window("w")
    assert reading.samples and reading.samples[0].power_w == 300.0


def test_counter_reset_falls_back_to_integration(one_gpu: FakeGpu) -> None:
    with NvmlMeter(sample_period_s=0.02) as meter:
        meter.begin_window("w")
        time.sleep(0.6)
        one_gpu.counter_offset_j = 0.0  # the driver reloaded: the counter starts again near zero
        time.sleep(0.6)
        reading = meter.end_window("w")
    assert "gpu:0:counter_reset" in reading.flags
    assert reading.method == "nvml_power_integration"
    assert reading.energy_j["gpu:0"] == pytest.approx(300.0 * reading.duration_s, rel=0.01)


def test_short_window_is_interpolated_and_flagged_never_zero(one_gpu: FakeGpu) -> None:
    with NvmlMeter(sample_period_s=0.05, start_sampler=False) as meter:
        meter.begin_window("tiny")
        time.sleep(0.01)
        reading = meter.end_window("tiny")
    assert "gpu:0:short_window_integrated" in reading.flags
    assert reading.energy_j["gpu:0"] > 0
    assert reading.energy_j["gpu:0"] == pytest.approx(300.0 * reading.duration_s, rel=0.05)


def test_stalled_counter_is_not_a_silent_zero(one_gpu: FakeGpu) -> None:
    one_gpu.counter_period_s = 1e9  # the counter never moves
    with NvmlMeter(sample_period_s=0.02, min_counter_window_s=0.1) as meter:
        meter.begin_window("w")
        time.sleep(0.3)
        reading = meter.end_window("w")
    assert "gpu:0:counter_stalled" in reading.flags
    assert reading.energy_j["gpu:0"] == pytest.approx(300.0 * reading.duration_s, rel=0.02)


def test_gpu_lost_mid_run_raises_at_the_window_edge(one_gpu: FakeGpu) -> None:
    with NvmlMeter(sample_period_s=0.01) as meter:
        meter.begin_window("w")
        one_gpu.lost = True
        time.sleep(0.1)
        with pytest.raises(NvmlGpuLost, match="GPU is lost"):
            meter.end_window("w")


def test_no_permission_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_nvml(monkeypatch, FakeNvml([FakeGpu("GPU-1")], init_error=nvml_device.NVML_ERROR_NO_PERMISSION))
    with pytest.raises(MeterError, match="permission denied"):
        NvmlMeter()


@pytest.mark.parametrize(("fake", "present"), [
    (FakeNvml([FakeGpu(uuid="GPU-1")]), True),
    (FakeNvml([]), False),
    (FakeNvml([FakeGpu(uuid="GPU-1")], init_error=nvml_device.NVML_ERROR_NO_PERMISSION), False),
])
def test_gpu_present_asks_nvml_and_never_raises(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml,
                                                present: bool) -> None:
    install_fake_nvml(monkeypatch, fake)
    assert nvml_device.gpu_present() is present


def test_cuda_visible_devices_picks_and_renumbers_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [FakeGpu("GPU-aaaa", power_w=100.0), FakeGpu("GPU-bbbb", power_w=200.0)]
    install_fake_nvml(monkeypatch, FakeNvml(gpus))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    with NvmlMeter(sample_period_s=0.02) as meter:
        assert meter.domains == ["gpu:0"]
        assert meter.describe()["gpu_uuids"] == ["GPU-bbbb"]
        assert meter.temperatures_c() == {"gpu:0": 41.0}
        meter.begin_window("w")
        time.sleep(0.3)
        reading = meter.end_window("w")
    assert reading.integrated_energy_j["gpu:0"] == pytest.approx(200.0 * reading.duration_s, rel=0.02)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(MeterError, match="hides them all"):
        NvmlMeter()


def test_two_gpus_are_two_domains(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [FakeGpu("GPU-aaaa", power_w=100.0), FakeGpu("GPU-bbbb", power_w=200.0)]
    install_fake_nvml(monkeypatch, FakeNvml(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with NvmlMeter(devices=["GPU-bbbb", 0], sample_period_s=0.02) as meter:
        meter.begin_window("w")
        time.sleep(1.1)
        reading = meter.end_window("w")
    assert set(reading.energy_j) == {"gpu:0", "gpu:1"}
    assert reading.integrated_energy_j["gpu:0"] == pytest.approx(200.0 * reading.duration_s, rel=0.02)
    assert reading.integrated_energy_j["gpu:1"] == pytest.approx(100.0 * reading.duration_s, rel=0.02)
    assert reading.domain_energy_j("gpu") == pytest.approx(sum(reading.energy_j.values()))
    with pytest.raises(MeterError, match="no GPU 5"):
        NvmlMeter(devices=[5])
