"""The public API, `import wattcounts`: `with wattcounts.meter() as m` and `@wattcounts.measured` meter a block with
the pipeline's meters (the CPU-time estimate here, the best this machine has; a recorded trace for exact numbers)."""

from __future__ import annotations

import time

import pytest

import wattcounts
from tests.helpers import TESTS
from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.estimate import EstimateMeter
from wattcounts_pipeline.meters.replay import ReplayMeter


def _busy(seconds: float) -> int:
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def test_meter_reports_energy_duration_and_method_of_a_block():
    with wattcounts.meter("spin") as m:
        assert m.energy_j is None  # filled in when the block ends
        _busy(0.3)
    assert m.method == "estimate" and "estimate" in m.flags  # no sensor here, and it says so
    assert m.duration_s == pytest.approx(0.3, abs=0.1)
    # one busy core of 2 at the default 10 W per CPU: about 10 W (other processes may add to the system-wide count)
    assert 0.5 * 10.0 * m.duration_s <= m.energy_j <= 20.0 * m.duration_s + 0.5
    assert m.mean_power_w == pytest.approx(m.energy_j / m.duration_s)
    assert m.energy_by_domain_j == {"cpu:estimate": m.energy_j}
    assert m.as_dict()["name"] == "spin" and wattcounts.__version__


def test_idle_baseline_gives_net_energy():
    with wattcounts.meter(meter=EstimateMeter(tdp_w=20.0), idle_s=0.2) as m:
        _busy(0.3)
    assert m.idle_power_w is not None and 0.0 <= m.idle_power_w <= 20.0 + 1.0  # system-wide: other processes count
    assert m.energy_net_j == pytest.approx(m.energy_j - m.idle_power_w * m.duration_s)


def test_a_block_that_raises_is_still_metered():
    block = wattcounts.meter("fails")
    with pytest.raises(ZeroDivisionError), block as m:
        _busy(0.05)
        _ = 1 / 0
    assert m.energy_j is not None and m.duration_s > 0


def test_decorator_keeps_the_latest_and_every_reading():
    @wattcounts.measured
    def work(seconds: float) -> int:
        return _busy(seconds)

    assert work.last is None
    assert work(0.05) > 0 and work(0.05) > 0
    assert len(work.history) == 2 and work.last is work.history[-1]
    assert work.last.name.endswith("work") and work.last.method == "estimate"

    @wattcounts.measured(name="named", meter_name="estimate")
    def other() -> None:
        _busy(0.02)

    other()
    assert other.last.name == "named"


def test_named_meter_that_is_absent_raises_with_the_reason():
    with pytest.raises(MeterError, match="NVML"), wattcounts.meter(meter="nvml"):
        pass


def test_given_meter_is_used_and_left_open():
    """Any EnergyMeter may be handed in (here a recorded H200 idle trace): its reading is the block's."""
    meter = ReplayMeter(TESTS / "fixtures" / "traces" / "h200_idle.jsonl")
    with wattcounts.meter(meter=meter) as m:
        _busy(0.05)
    assert m.method == "replay" and m.energy_j is not None and m.device.get("gpu_name")
    meter.begin_window("still-open")  # the caller's meter is not closed by the block
    meter.end_window("still-open")

