"""The power sampler thread and the trapezoid integration both meters rely on."""

from __future__ import annotations

import time

import pytest

from wattcounts_pipeline.meters.sampler import PowerSampler, ProbeRow, integrate_energy_j


def test_integration_of_constant_and_linear_power() -> None:
    assert integrate_energy_j([0.0, 1.0, 2.0], [100.0, 100.0, 100.0], 0.0, 2.0) == pytest.approx(200.0)
    # 0 → 200 W over 2 s: a triangle of 200 J; half of it is 50 J.
    assert integrate_energy_j([0.0, 2.0], [0.0, 200.0], 0.0, 2.0) == pytest.approx(200.0)
    assert integrate_energy_j([0.0, 2.0], [0.0, 200.0], 0.0, 1.0) == pytest.approx(50.0)


def test_integration_interpolates_inside_and_holds_outside() -> None:
    # A window between two samples (shorter than the sample period) gets the interpolated power, not zero.
    assert integrate_energy_j([0.0, 1.0], [100.0, 300.0], 0.4, 0.6) == pytest.approx(0.2 * 200.0)
    # Beyond the samples, the end values are held.
    assert integrate_energy_j([1.0, 2.0], [50.0, 50.0], 0.0, 3.0) == pytest.approx(150.0)
    assert integrate_energy_j([1.0], [80.0], 0.0, 0.5) == pytest.approx(40.0)
    assert integrate_energy_j([0.0, 1.0], [100.0, 100.0], 1.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="no samples"):
        integrate_energy_j([], [], 0.0, 1.0)


def test_sampler_runs_at_its_rate_and_returns_ordered_windows() -> None:
    calls = 0

    def probe() -> list[ProbeRow]:
        nonlocal calls
        calls += 1
        return [ProbeRow("gpu:0", 100.0, 40.0, 1980.0, float(calls)), ProbeRow("gpu:1", 200.0, None, None, None)]

    sampler = PowerSampler(probe, period_s=0.02)
    t0 = time.perf_counter()
    sampler.start()
    assert sampler.running
    time.sleep(0.5)
    t_edge, rows = sampler.sample_now()
    sampler.stop()
    t1 = time.perf_counter()
    assert not sampler.running and sampler.error is None
    assert rows[0][0] == "gpu:0" and t0 < t_edge < t1
    stored = sampler.samples(t0, t1)
    assert [r[0] for r in stored] == sorted(r[0] for r in stored)
    rate_hz = len(sampler.samples(t0, t1, domain="gpu:0")) / (t1 - t0)
    assert 20 <= rate_hz <= 60  # ~50 Hz asked; generous bounds for a loaded CI machine
    assert sampler.cpu_s > 0
    t_s, power_w = sampler.power_series("gpu:1", t0 + 0.1, t0 + 0.3, n_domains=2)
    assert t_s[0] < t0 + 0.1 < t0 + 0.3 < t_s[-1]  # one sample either side of the window
    assert set(power_w) == {200.0}


def test_a_failing_probe_stops_the_thread_and_keeps_the_error() -> None:
    def probe() -> list[ProbeRow]:
        raise RuntimeError("GPU fell off the bus")

    sampler = PowerSampler(probe, period_s=0.01)
    sampler.start()
    deadline = time.perf_counter() + 2.0
    while sampler.running and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not sampler.running
    assert isinstance(sampler.error, RuntimeError)


def test_old_samples_are_dropped_beyond_the_bound() -> None:
    sampler = PowerSampler(lambda: [ProbeRow("gpu:0", 1.0, None, None, None)], period_s=1.0, max_samples=3)
    first_t, _ = sampler.sample_now()
    for _ in range(3):
        sampler.sample_now()
    assert sampler.oldest_t_s is not None and sampler.oldest_t_s > first_t


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PowerSampler(list, period_s=0)
