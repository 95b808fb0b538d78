"""The measurement protocol's pure functions (protocol, attribution, repetition statistics), on numbers worked out
by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from wattcounts_pipeline.core.stats import summarize
from wattcounts_pipeline.meters.attribution import attribute_energy, split_prefill_decode
from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading, PowerSample
from wattcounts_pipeline.meters.protocol import cool_down, power_series, steady_window


def test_summarize_uses_student_t() -> None:
    stats = summarize([10.0, 12.0, 14.0])
    assert stats.n == 3 and stats.mean == 12.0 and stats.std == pytest.approx(2.0)
    half_width = 4.302652729911275 * 2.0 / math.sqrt(3)  # t(0.975, df=2)
    assert stats.ci95_low == pytest.approx(12.0 - half_width)
    assert stats.ci95_high == pytest.approx(12.0 + half_width)
    assert stats.ci95_half_width == pytest.approx(half_width)
    assert stats.cv == pytest.approx(2.0 / 12.0)


def test_summarize_never_invents_a_spread() -> None:
    one = summarize([5.0])
    assert one.mean == 5.0 and math.isnan(one.std) and math.isnan(one.ci95_low) and math.isnan(one.cv)
    with pytest.raises(ValueError):
        summarize([])


def test_attribution_with_constant_power_shares_overlaps_equally() -> None:
    # 100 W. A alone 0–2 s (200 J); A and B together 2–4 s (200 J, 100 J each); B alone 4–5 s (100 J).
    result = attribute_energy([(0.0, 4.0), (2.0, 5.0)], 100.0)
    assert result.per_request_j == pytest.approx((300.0, 200.0))
    assert result.unattributed_j == 0.0


def test_attribution_leaves_idle_gaps_and_window_edges_unattributed() -> None:
    result = attribute_energy([(1.0, 2.0), (3.0, 4.0)], 50.0, window_s=(0.0, 5.0))
    assert result.per_request_j == pytest.approx((50.0, 50.0))
    assert result.unattributed_j == pytest.approx(150.0)  # 0–1, 2–3, 4–5 s
    clipped = attribute_energy([(-1.0, 1.0)], 10.0, window_s=(0.0, 2.0))
    assert clipped.per_request_j == pytest.approx((10.0,))


def test_attribution_follows_a_power_trace() -> None:
    # Power ramps 0 → 400 W over 4 s. Request A spans 0–4 s, B spans 2–4 s.
    # 0–2 s: mean 100 W, 200 J to A alone; 2–4 s: mean 300 W, 600 J shared → 300 J each.
    result = attribute_energy([(0.0, 4.0), (2.0, 4.0)], [0.0, 400.0], t_s=[0.0, 4.0])
    assert result.per_request_j == pytest.approx((500.0, 300.0))
    three = attribute_energy([(0.0, 3.0)] * 3, [300.0, 300.0], t_s=[0.0, 3.0])
    assert three.per_request_j == pytest.approx((300.0, 300.0, 300.0))


def test_attribution_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        attribute_energy([], 10.0)
    with pytest.raises(ValueError, match="ends before"):
        attribute_energy([(2.0, 1.0)], 10.0)
    with pytest.raises(ValueError, match="t_s"):
        attribute_energy([(0.0, 1.0)], [1.0, 2.0])


def test_prefill_decode_split() -> None:
    # 8 requests: the full run outputs 128 tokens each, the prefill-only run 1 each.
    split = split_prefill_decode(full_energy_j=900.0, full_output_tokens=8 * 128, prefill_energy_j=100.0,
                                 prefill_output_tokens=8)
    assert split.prefill_energy_j == 100.0 and split.decode_energy_j == 800.0
    assert split.decode_tokens == 8 * 127
    assert split.decode_energy_j_per_token == pytest.approx(800.0 / 1016)
    with pytest.raises(ValueError, match="more energy"):
        split_prefill_decode(100.0, 64, 120.0, 8)
    with pytest.raises(ValueError, match="must output more"):
        split_prefill_decode(100.0, 8, 50.0, 8)


def test_steady_window_trims_ramps() -> None:
    t_s = [i * 0.1 for i in range(100)]
    power_w = [100.0 + 40.0 * i for i in range(10)] + [500.0] * 80 + [500.0 - 40.0 * i for i in range(1, 11)]
    power_w[50] = 900.0  # one spike must not cut the window
    start_s, end_s = steady_window(t_s, power_w)
    assert start_s == pytest.approx(0.9, abs=0.15)
    assert end_s == pytest.approx(9.0, abs=0.15)
    with pytest.raises(ValueError, match="at least 3"):
        steady_window([0.0, 1.0], [1.0, 1.0])


def test_power_series_sums_domains_per_instant() -> None:
    samples = [PowerSample(0.0, "gpu:0", 100.0), PowerSample(0.0, "gpu:1", 50.0), PowerSample(0.1, "gpu:0", 110.0),
               PowerSample(0.1, "gpu:1", 60.0)]
    assert power_series(samples) == ([0.0, 0.1], [150.0, 170.0])
    assert power_series(samples, "gpu:1") == ([0.0, 0.1], [50.0, 60.0])


class CoolingMeter(EnergyMeter):
    """Temperature falls 1 °C per reading; no energy."""

    def __init__(self, start_c: float | None) -> None:
        super().__init__()
        self.temp_c = start_c

    def _snapshot(self) -> Any:
        return None

    def _reading(self, key: str, duration_s: float, begin: Any, end: Any) -> EnergyReading:
        return EnergyReading(key=key, duration_s=duration_s, energy_j={}, method="estimate")

    def temperatures_c(self) -> dict[str, float]:
        if self.temp_c is None:
            return {}
        self.temp_c -= 1.0
        return {"gpu:0": self.temp_c}


class FakeTime:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.now_s += seconds


def test_cool_down_waits_for_baseline() -> None:
    clock = FakeTime()
    result = cool_down(CoolingMeter(60.0), baseline_temp_c=50.0, tolerance_c=3.0, poll_s=2.0, sleep=clock.sleep,
                       clock=clock)
    assert result.reached is True and result.temperatures_c == {"gpu:0": 53.0}
    assert result.waited_s == pytest.approx(12.0)  # readings 59, 58, …, 53: six polls of 2 s


def test_cool_down_gives_up_and_is_a_no_op_without_sensor(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime()
    result = cool_down(CoolingMeter(90.0), baseline_temp_c={"gpu:0": 40.0}, timeout_s=10.0, poll_s=5.0,
                       sleep=clock.sleep, clock=clock)
    assert result.reached is False and result.waited_s == pytest.approx(10.0)
    assert "cool-down gave up" in caplog.text
    nothing = cool_down(CoolingMeter(None), baseline_temp_c=40.0, sleep=clock.sleep, clock=clock)
    assert nothing.reached is None and nothing.waited_s == 0.0
