"""Replay meter over real H200 traces recorded by benchmarks/meter_fidelity.py (driver 580.159.04).

  h200_idle.jsonl                       10 s idle, CUDA context up (~127 W)
  h200_decode_eager_b32.jsonl           75 s continuous eager decode, batch 32 (power swings 120–790 W)
  h200_decode_static_b256_5reps.jsonl   5 x 30 s compiled decode, batch 256, at the 700 W power limit
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TESTS
from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.attribution import attribute_energy
from wattcounts_pipeline.meters.base import EnergyReading
from wattcounts_pipeline.meters.protocol import cool_down, measure_idle, power_series, steady_window
from wattcounts_pipeline.meters.replay import ManualClock, ReplayMeter, load_trace, write_trace
from wattcounts_pipeline.meters.sampler import integrate_energy_j
from wattcounts_pipeline.meters.select import best_meter

TRACES = TESTS / "fixtures" / "traces"
IDLE = TRACES / "h200_idle.jsonl"
EAGER = TRACES / "h200_decode_eager_b32.jsonl"
STATIC = TRACES / "h200_decode_static_b256_5reps.jsonl"


@pytest.mark.parametrize("path", [IDLE, EAGER, STATIC], ids=lambda p: p.stem)
def test_fixtures_are_real_small_and_sampled_at_20_hz(path: Path) -> None:
    assert path.stat().st_size < 1_000_000
    trace = load_trace(path)
    assert trace.meta["gpu_name"] == "NVIDIA H200" and trace.meta["driver_version"] == "580.159.04"
    gpu = trace.domains["gpu:0"]
    assert gpu.has_counter
    assert float(np.median(np.diff(gpu.t_s))) <= 0.1  # ≥ 10 Hz
    assert np.all(np.diff(gpu.energy_j) >= 0)  # the counter never goes back


def window(meter: ReplayMeter, clock: ManualClock, start_s: float, duration_s: float,
           key: str = "w") -> EnergyReading:
    clock.now_s = start_s
    meter.begin_window(key)
    clock.advance(duration_s)
    return meter.end_window(key)


def test_counter_and_integrated_trace_agree_within_2_percent_on_long_windows() -> None:
    """The benchmark's floor, re-checked in CI on the recorded eager decode trace at many offsets."""
    clock = ManualClock()
    meter = ReplayMeter(EAGER, clock=clock)
    worst_pct = 0.0
    for duration_s in (10.0, 15.0):
        for start_s in np.arange(0.0, meter.trace.duration_s - duration_s, 2.5):
            reading = window(meter, clock, float(start_s), duration_s)
            t_s, power_w = power_series(reading.samples, "gpu:0")
            integrated_j = integrate_energy_j(t_s, power_w, 0.0, reading.duration_s)
            worst_pct = max(worst_pct, abs(integrated_j / reading.energy_j["gpu:0"] - 1) * 100)
    assert worst_pct <= 2.0


def test_replayed_windows_are_deterministic_and_match_the_counter() -> None:
    trace = load_trace(STATIC)
    readings = []
    for _ in range(2):
        clock = ManualClock()
        meter = ReplayMeter(trace, clock=clock)
        readings.append(window(meter, clock, 12.0, 10.0))
    first, second = readings
    assert first == second
    assert first.method == "replay" and "replay_counter" in first.flags
    assert first.duration_s == pytest.approx(10.0)
    gpu = trace.domains["gpu:0"]
    expected_j = np.interp(22.0, gpu.t_s, gpu.energy_j) - np.interp(12.0, gpu.t_s, gpu.energy_j)
    assert first.energy_j["gpu:0"] == pytest.approx(expected_j)
    assert 600 < first.mean_power_w < 760  # power-capped at 700 W
    assert 150 <= len(first.samples) <= 250
    assert all(0 <= s.t_s <= 10.0 for s in first.samples)
    assert first.device_info["replay_source"] == STATIC.name and first.device_info["power_limit_w"] == 700.0


def test_a_window_past_the_end_is_refused_unless_looping() -> None:
    clock = ManualClock()
    meter = ReplayMeter(IDLE, clock=clock)
    meter.begin_window("long")
    clock.advance(60.0)
    with pytest.raises(MeterError, match="past|longer trace|ends"):
        meter.end_window("long")
    looping = ReplayMeter(IDLE, clock=(loop_clock := ManualClock()), loop=True)
    total_j = window(looping, loop_clock, 0.0, looping.trace.duration_s).energy_j["gpu:0"]
    two_laps = window(looping, loop_clock, 0.0, 2 * looping.trace.duration_s, key="laps")
    assert two_laps.energy_j["gpu:0"] == pytest.approx(2 * total_j)
    assert len(two_laps.samples) == pytest.approx(2 * len(looping.trace.domains["gpu:0"].t_s), abs=2)


def test_a_real_time_clock_replays_at_speed() -> None:
    meter = ReplayMeter(IDLE, speed=1000.0)
    meter.begin_window("w")
    meter.end_window("w")  # a few ms of wall time: a few trace seconds at most
    meter.begin_window("w2")
    reading = meter.end_window("w2")
    assert reading.duration_s >= 0 and reading.energy_j["gpu:0"] >= 0


def test_measure_idle_on_the_idle_trace() -> None:
    clock = ManualClock()
    idle_w = measure_idle(ReplayMeter(IDLE, clock=clock), duration_s=8.0, sleep=clock.sleep)
    assert idle_w["gpu:0"] == pytest.approx(127.3, abs=1.5)


def test_steady_window_trims_the_eager_trace_ramp() -> None:
    trace = load_trace(STATIC)
    gpu = trace.domains["gpu:0"]
    start_s, end_s = steady_window(gpu.t_s, gpu.power_w, band_fraction=0.15, smooth_n=11)
    assert gpu.t_s[0] <= start_s < gpu.t_s[0] + 5
    assert gpu.t_s[-1] - 5 < end_s <= gpu.t_s[-1]


def test_cool_down_reads_trace_temperatures() -> None:
    clock = ManualClock()
    idle = ReplayMeter(IDLE, clock=clock)
    done = cool_down(idle, baseline_temp_c=38.0, tolerance_c=2.0, sleep=clock.sleep, clock=clock)
    assert done.reached is True and done.waited_s == 0.0
    hot_clock = ManualClock()
    hot = ReplayMeter(STATIC, clock=hot_clock, loop=True)
    gave_up = cool_down(hot, baseline_temp_c=38.0, tolerance_c=2.0, timeout_s=20.0, poll_s=5.0,
                        sleep=hot_clock.sleep, clock=hot_clock)
    assert gave_up.reached is False and gave_up.waited_s >= 20.0
    assert gave_up.temperatures_c["gpu:0"] > 45.0


def test_attribution_over_a_real_trace_conserves_energy() -> None:
    trace = load_trace(EAGER)
    gpu = trace.domains["gpu:0"]
    requests = [(2.0, 20.0), (5.0, 9.0), (8.0, 30.0), (40.0, 50.0)]
    result = attribute_energy(requests, gpu.power_w, t_s=gpu.t_s)
    total_j = integrate_energy_j(gpu.t_s, gpu.power_w, 2.0, 50.0)
    assert sum(result.per_request_j) + result.unattributed_j == pytest.approx(total_j, rel=1e-9)
    assert result.unattributed_j == pytest.approx(integrate_energy_j(gpu.t_s, gpu.power_w, 30.0, 40.0), rel=1e-9)


def test_csv_and_jsonl_traces_replay_alike(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in IDLE.read_text().splitlines()[1:]]
    csv_path = tmp_path / "idle.csv"
    columns = ["t_s", "domain", "power_w", "temperature_c", "sm_clock_mhz", "energy_j"]
    csv_path.write_text("\n".join([",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns)
                                                          for r in rows]) + "\n")
    readings = []
    for path in (IDLE, csv_path):
        clock = ManualClock()
        readings.append(window(ReplayMeter(path, clock=clock), clock, 1.0, 5.0))
    assert readings[0].energy_j == pytest.approx(readings[1].energy_j)


def test_a_trace_without_counter_integrates_power(tmp_path: Path) -> None:
    path = tmp_path / "flat.jsonl"
    path.write_text("".join(json.dumps({"t_s": t, "domain": "gpu:0", "power_w": 200.0}) + "\n" for t in range(11)))
    clock = ManualClock()
    reading = window(ReplayMeter(path, clock=clock), clock, 2.0, 5.0)
    assert reading.energy_j == pytest.approx({"gpu:0": 1000.0})
    assert "replay_power_integration" in reading.flags
    assert reading.samples[0].temperature_c is None


def test_write_trace_round_trip(tmp_path: Path) -> None:
    clock = ManualClock()
    reading = window(ReplayMeter(IDLE, clock=clock), clock, 0.0, 4.0)
    path = tmp_path / "copy.jsonl"
    assert write_trace(path, reading.samples, {"gpu_name": "copy"}) == len(reading.samples)
    copy = load_trace(path)
    assert copy.meta == {"gpu_name": "copy"}
    assert copy.domains["gpu:0"].energy_j[0] == 0.0  # counter made relative to the first sample
    assert copy.domains["gpu:0"].cumulative_energy_j(copy.end_s) == pytest.approx(
        float(np.ptp([s.energy_j for s in reading.samples])), abs=0.01)


def test_malformed_traces_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t_s": 0, "domain": "gpu:0", "power_w": 1}\nnot json\n')
    with pytest.raises(MeterError, match="line 2"):
        load_trace(bad)
    bad.write_text('{"t_s": 0, "watts": 1}\n')
    with pytest.raises(MeterError, match="lacks column"):
        load_trace(bad)
    with pytest.raises(MeterError, match="cannot read trace"):
        load_trace(tmp_path / "missing.jsonl")


def test_best_meter_builds_a_replay_meter_by_name() -> None:
    meter = best_meter(f"replay:{IDLE}")
    assert isinstance(meter, ReplayMeter)
    with pytest.raises(MeterError, match="unknown meter"):
        best_meter("geiger")
