"""RAPL meter over a real powercap-shaped folder of files written in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.rapl import RaplMeter, discover_zones

RANGE_UJ = 262_143_328_850  # a common package max_energy_range_uj


def write_zone(path: Path, name: str, energy_uj: int, range_uj: int = RANGE_UJ) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """Two sockets, each with core/uncore/dram subzones, plus psys and the MMIO duplicate of package 0."""
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0", 1_000_000)
    write_zone(root / "intel-rapl:0:0", "core", 500_000)
    write_zone(root / "intel-rapl:0:1", "uncore", 100_000)
    write_zone(root / "intel-rapl:0:2", "dram", 2_000_000)
    write_zone(root / "intel-rapl:1", "package-1", 3_000_000)
    write_zone(root / "intel-rapl:1:0", "dram", 4_000_000)
    write_zone(root / "intel-rapl:2", "psys", 9_000_000)
    write_zone(root / "intel-rapl-mmio:0", "package-0", 1_000_000)
    (root / "unrelated").mkdir()
    return root


def bump(path: Path, energy_uj: int) -> None:
    (path / "energy_uj").write_text(f"{energy_uj}\n")


def test_only_package_and_dram_domains_are_read(powercap: Path) -> None:
    domains = [zone.domain for zone in discover_zones(powercap)]
    assert domains == ["cpu:package-0", "dram:package-0", "cpu:package-1", "dram:package-1"]


def test_window_energy_in_joules_per_domain(powercap: Path) -> None:
    meter = RaplMeter(powercap)
    meter.begin_window("w")
    bump(powercap / "intel-rapl:0", 1_000_000 + 25_500_000)  # +25.5 J
    bump(powercap / "intel-rapl:0:2", 2_000_000 + 3_000_000)  # +3 J
    bump(powercap / "intel-rapl:0:0", 500_000 + 20_000_000)  # core: inside the package, must not count
    bump(powercap / "intel-rapl:2", 9_000_000 + 99_000_000)  # psys: overlaps everything, must not count
    reading = meter.end_window("w")
    assert reading.method == "rapl" and reading.flags == ()
    assert reading.energy_j == pytest.approx({"cpu:package-0": 25.5, "dram:package-0": 3.0,
                                              "cpu:package-1": 0.0, "dram:package-1": 0.0})
    assert reading.total_energy_j == pytest.approx(28.5)
    assert reading.domain_energy_j("cpu") == pytest.approx(25.5)
    assert reading.domain_energy_j("dram") == pytest.approx(3.0)
    assert reading.domain_energy_j("gpu") is None
    assert reading.device_info["rapl_domains"] == ["cpu:package-0", "dram:package-0", "cpu:package-1",
                                                   "dram:package-1"]


def test_wraparound_is_undone_and_flagged(powercap: Path) -> None:
    bump(powercap / "intel-rapl:1", RANGE_UJ - 2_000_000)  # 2 J before the wrap
    meter = RaplMeter(powercap)
    meter.begin_window("w")
    bump(powercap / "intel-rapl:1", 3_000_000)  # 3 J after it
    reading = meter.end_window("w")
    assert reading.energy_j["cpu:package-1"] == pytest.approx(5.0)
    assert "cpu:package-1:wrapped" in reading.flags


def test_long_windows_are_flagged_as_possibly_wrapping_twice(powercap: Path) -> None:
    small_range_uj = 10  # 10 µJ: at 500 W a second wrap could hide in any window over 20 ns
    write_zone(powercap / "intel-rapl:0:2", "dram", 0, range_uj=small_range_uj)
    meter = RaplMeter(powercap)
    meter.begin_window("w")
    reading = meter.end_window("w")
    assert "dram:package-0:may_have_wrapped_twice" in reading.flags


def test_nested_layout_of_sys_devices_is_read_too(tmp_path: Path) -> None:
    root = tmp_path / "intel-rapl"
    package = write_zone(root / "intel-rapl:0", "package-0", 0)
    write_zone(package / "intel-rapl:0:0", "dram", 0)
    assert [z.domain for z in discover_zones(root)] == ["cpu:package-0", "dram:package-0"]


def test_permission_denied_names_the_file(powercap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = powercap / "intel-rapl:1" / "energy_uj"
    target.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the kernel's answer for a non-root user explicit
        real_read_text = Path.read_text

        def read_text(self: Path, *args: object, **kwargs: object) -> str:
            if self == target:
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(MeterError) as info:
        RaplMeter(powercap)
    assert str(target) in str(info.value) and "permission denied" in str(info.value)
    assert "root" in str(info.value)


def test_garbage_and_missing_files_are_clear_errors(powercap: Path, tmp_path: Path) -> None:
    bump(powercap / "intel-rapl:0", "n/a")  # type: ignore[arg-type]
    with pytest.raises(MeterError, match=r"intel-rapl:0/energy_uj holds 'n/a'"):
        RaplMeter(powercap)
    with pytest.raises(MeterError, match="does not exist"):
        RaplMeter(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MeterError, match="no RAPL package domain"):
        RaplMeter(empty)
