"""CPU package and DRAM energy through Linux powercap RAPL (Intel, and AMD Zen through the same tree).

Only domains that do not overlap are read: each package ("cpu:package-N") and its DRAM subzone
("dram:package-N"). Core and uncore subzones sit inside the package and `psys` covers the whole platform,
so adding them would count the same joules twice; the MMIO interface repeats the package counter.
Counters wrap at `max_energy_range_uj`; one wrap per window is undone, more cannot be seen.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattcounts_pipeline.core.errors import MeterError
from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading
from wattcounts_pipeline.meters.estimate import cpu_model_name

logger = logging.getLogger(__name__)

DEFAULT_RAPL_ROOT = Path("/sys/class/powercap")
# A window longer than max_energy_range_j / this power could hide a second wrap; such readings are flagged.
MAX_PLAUSIBLE_DOMAIN_POWER_W = 500.0

_TOP_ZONE = re.compile(r"^(?P<prefix>[a-z]+-rapl):(?P<n>\d+)$")


@dataclass(frozen=True)
class RaplZone:
    """One RAPL counter that is read: its domain name, folder and wrap range."""

    domain: str
    path: Path
    max_energy_range_j: float


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError as exc:
        raise MeterError(f"cannot read {path}: permission denied. Since Linux 5.10 RAPL energy files are "
                         f"readable by root only; run as root or grant read access (e.g. `sudo chmod o+r "
                         f"{path}`)") from exc
    except OSError as exc:
        raise MeterError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_uj_as_j(path: Path) -> float:
    """A microjoule file, in joules (the one place RAPL's unit is converted)."""
    text = _read_text(path)
    try:
        return int(text) / 1e6
    except ValueError as exc:
        raise MeterError(f"{path} holds {text!r}, not a whole number of microjoules") from exc


def discover_zones(root: Path) -> list[RaplZone]:
    """The package and DRAM zones under a powercap folder, skipping overlapping and duplicate ones."""
    zones: list[RaplZone] = []
    if not root.is_dir():
        raise MeterError(f"no RAPL: {root} does not exist (not Linux, powercap not built in, or a VM "
                         "that hides it)")
    for top in sorted(root.iterdir()):
        match = _TOP_ZONE.match(top.name)
        if match is None:
            continue  # subzones are handled under their package; "intel-rapl-mmio" repeats the package
        name = _read_text(top / "name")
        if not name.startswith("package"):
            logger.debug("skipping RAPL zone %s (%s): it overlaps the package domains", top, name)
            continue
        zones.append(RaplZone(f"cpu:{name}", top, _read_uj_as_j(top / "max_energy_range_uj")))
        # Subzones appear flat in /sys/class/powercap and nested in /sys/devices/virtual/powercap.
        sub_pattern = f"{top.name}:*"
        subzones = {p.name: p for p in [*root.glob(sub_pattern), *top.glob(sub_pattern)] if p.is_dir()}
        for sub_name in sorted(subzones):
            sub = subzones[sub_name]
            kind = _read_text(sub / "name")
            if kind == "dram":
                zones.append(RaplZone(f"dram:{name}", sub, _read_uj_as_j(sub / "max_energy_range_uj")))
            else:
                logger.debug("skipping RAPL subzone %s (%s): it is inside %s", sub, kind, name)
    if not zones:
        raise MeterError(f"no RAPL package domain under {root}")
    return zones


class RaplMeter(EnergyMeter):
    """CPU package + DRAM joules from the powercap energy counters; no power trace."""

    method = "rapl"

    def __init__(self, root: str | Path = DEFAULT_RAPL_ROOT) -> None:
        super().__init__()
        self.root = Path(root)
        self.zones = discover_zones(self.root)
        self._snapshot()  # fail now, naming the file, if a counter is unreadable

    def _snapshot(self) -> dict[str, float]:
        return {zone.domain: _read_uj_as_j(zone.path / "energy_uj") for zone in self.zones}

    def _reading(self, key: str, duration_s: float, begin: dict[str, float], end: dict[str, float]) -> EnergyReading:
        energy_j: dict[str, float] = {}
        flags: list[str] = []
        for zone in self.zones:
            delta_j = end[zone.domain] - begin[zone.domain]
            if delta_j < 0:
                delta_j += zone.max_energy_range_j
                flags.append(f"{zone.domain}:wrapped")
            if duration_s * MAX_PLAUSIBLE_DOMAIN_POWER_W > zone.max_energy_range_j:
                flags.append(f"{zone.domain}:may_have_wrapped_twice")
            energy_j[zone.domain] = delta_j
        return EnergyReading(key=key, duration_s=duration_s, energy_j=energy_j, method=self.method,
                             flags=tuple(flags), device_info=self.describe())

    def describe(self) -> dict[str, Any]:
        return {"cpu_model": cpu_model_name(), "cpu_count": os.cpu_count() or 1, "rapl_root": str(self.root),
                "rapl_domains": [zone.domain for zone in self.zones]}
