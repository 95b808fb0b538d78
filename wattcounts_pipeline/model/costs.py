"""What a million tokens costs: the GPU-hours they take plus the electricity they draw, in the user's currency,
and the carbon of that electricity on the user's grid.

For most teams the GPU-hour, not the energy, dominates: an H200 rented at a few dollars an hour costs about a
hundred times its electricity. Prices, exchange rates and grid intensities come from reviewed catalog files with
their source and date (catalog/gpu_prices.yaml, currencies.yaml, grid_intensity.yaml); every one is overridable.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from wattcounts_pipeline.core.vocab import CARBON_G_PER_KWH, ELECTRICITY_USD_PER_KWH
from wattcounts_pipeline.model.errors import ModelError

CATALOG_DIR = Path(__file__).parent / "catalog"
J_PER_KWH = 3.6e6
S_PER_HOUR = 3600.0


@functools.cache
def _catalog(name: str) -> dict[str, Any]:
    path = CATALOG_DIR / name
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: cannot read the catalog: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: not a mapping")
    return doc


def currencies() -> dict[str, dict[str, Any]]:
    """Currency code -> its entry (`per_usd`: units per 1 USD, with the reference rate's date)."""
    return dict(_catalog("currencies.yaml")["rates"])


def gpu_prices() -> dict[str, dict[str, Any]]:
    """Hardware catalog key -> on-demand price of one GPU for one hour (`usd_per_hour`, provider, source, date)."""
    return dict(_catalog("gpu_prices.yaml").get("gpu_hour_usd") or {})


def grid_regions() -> dict[str, dict[str, Any]]:
    """Region code (ISO 3166-1 alpha-3 country, or `provider:region` of a cloud) -> `g_per_kwh` and its name."""
    doc = _catalog("grid_intensity.yaml")
    return {**(doc.get("regions") or {}), **(doc.get("cloud_regions") or {})}


@dataclass(frozen=True)
class Costs:
    """The prices a recommendation counts, in `currency`, and where each came from (`sources`, shown to the user)."""

    currency: str = "USD"
    electricity_per_kwh: float = ELECTRICITY_USD_PER_KWH
    gpu_hour: float | None = None  # per GPU; None: GPU time not counted (no price known or asked for)
    carbon_g_per_kwh: float = CARBON_G_PER_KWH
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("electricity_per_kwh", "carbon_g_per_kwh", "gpu_hour"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ModelError(f"{name} must be a finite number >= 0, got {value!r}")

    def add_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per 1M output tokens: `energy_cost_per_1m_tokens` (electricity), `gpu_cost_per_1m_tokens` (GPU-hours at
        the predicted throughput; 0 on a CPU), `cost_per_1m_tokens` (their sum) and `co2_per_1m_tokens_g`.
        Needs `energy_per_token_j`, `tokens_per_s` (all requests together) and `gpu_count`."""
        kwh = table["energy_per_token_j"] * 1e6 / J_PER_KWH
        table["energy_cost_per_1m_tokens"] = kwh * self.electricity_per_kwh
        hours = 1e6 / table["tokens_per_s"].where(table["tokens_per_s"] > 0) / S_PER_HOUR
        gpu_hours = hours * table["gpu_count"].clip(lower=0)
        table["gpu_cost_per_1m_tokens"] = 0.0 if self.gpu_hour is None else gpu_hours * self.gpu_hour
        table["cost_per_1m_tokens"] = table["energy_cost_per_1m_tokens"] + table["gpu_cost_per_1m_tokens"]
        table["co2_per_1m_tokens_g"] = kwh * self.carbon_g_per_kwh
        return table


def resolve_costs(hardware: str, gpu: bool, currency: str = "USD", electricity_per_kwh: float | None = None,
                  gpu_hour: float | None = None, region: str | None = None,
                  carbon_g_per_kwh: float | None = None, count_gpu_hours: bool = True) -> Costs:
    """The prices for `hardware` (a catalog key) in `currency`: the user's numbers where given (already in that
    currency), else the catalog's, converted. `region` picks the grid's carbon intensity; `carbon_g_per_kwh` wins."""
    rates = currencies()
    code = currency.upper()
    if code not in rates:
        raise ModelError(f"unknown currency {currency!r}; known: {', '.join(sorted(rates))}")
    per_usd = float(rates[code]["per_usd"])
    rate_note = "" if code == "USD" else f" at {per_usd:.4g} {code}/USD ({rates[code].get('date', 'undated')})"
    sources: dict[str, str] = {}
    if electricity_per_kwh is None:
        electricity_per_kwh = ELECTRICITY_USD_PER_KWH * per_usd
        sources["electricity"] = f"default {ELECTRICITY_USD_PER_KWH:g} USD/kWh{rate_note}"
    else:
        sources["electricity"] = f"given, {electricity_per_kwh:g} {code}/kWh"
    if not gpu or not count_gpu_hours:
        gpu_hour = None
        sources["gpu_hour"] = "not counted" + ("" if gpu else " (CPU)")
    elif gpu_hour is None:
        listed = gpu_prices().get(hardware)
        if listed is None:
            sources["gpu_hour"] = f"not counted: no price listed for {hardware} (give --gpu-hour-price)"
        else:
            gpu_hour = float(listed["usd_per_hour"]) * per_usd
            sources["gpu_hour"] = (f"{listed['usd_per_hour']:g} USD/GPU-hour, {listed.get('provider', '?')} on-demand "
                                   f"list price read {listed.get('read_on', '?')}{rate_note}")
    else:
        sources["gpu_hour"] = f"given, {gpu_hour:g} {code}/GPU-hour"
    if carbon_g_per_kwh is not None:
        sources["carbon"] = f"given, {carbon_g_per_kwh:g} gCO2e/kWh"
    elif region is not None:
        regions = grid_regions()
        entry = regions.get(region) or regions.get(region.upper())
        if entry is None:
            raise ModelError(f"unknown grid region {region!r}: give an ISO 3166-1 alpha-3 country code (FRA, USA, "
                             f"DEU, ...) or a cloud region such as aws:us-east-1 ({len(regions)} known, "
                             "catalog/grid_intensity.yaml)")
        carbon_g_per_kwh = float(entry["g_per_kwh"])
        sources["carbon"] = (f"{carbon_g_per_kwh:g} gCO2e/kWh, grid of {entry.get('name') or region} "
                             f"({_catalog('grid_intensity.yaml').get('source', 'catalog')})")
    else:
        carbon_g_per_kwh = CARBON_G_PER_KWH
        sources["carbon"] = f"default {CARBON_G_PER_KWH:g} gCO2e/kWh (give --region for your grid)"
    return Costs(currency=code, electricity_per_kwh=electricity_per_kwh, gpu_hour=gpu_hour,
                 carbon_g_per_kwh=carbon_g_per_kwh, sources=sources)

