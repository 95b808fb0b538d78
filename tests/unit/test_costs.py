"""Total cost per million tokens: GPU-hours plus electricity, in the user's currency, carbon from the user's grid,
each number from the catalog's cited files unless the user gives their own."""

from __future__ import annotations

import pandas as pd
import pytest

from wattcounts_pipeline.model.costs import Costs, currencies, gpu_prices, grid_regions, resolve_costs
from wattcounts_pipeline.model.errors import ModelError


def test_catalog_prices_are_cited_and_name_catalog_hardware() -> None:
    from wattcounts_pipeline.model.catalog import get_hardware

    prices = gpu_prices()
    assert {"H200", "H100-SXM", "A100-80GB", "L4"} <= set(prices)
    for key, entry in prices.items():
        assert get_hardware(key).key == key and entry["usd_per_hour"] > 0
        assert entry["source"] and entry["read_on"] and entry["provider"]
    assert currencies()["USD"]["per_usd"] == 1.0 and 0 < currencies()["EUR"]["per_usd"] < 2
    assert grid_regions()["FRA"]["g_per_kwh"] < grid_regions()["POL"]["g_per_kwh"]  # nuclear vs coal grids


def test_defaults_come_from_the_catalog_and_convert_to_the_currency() -> None:
    usd = resolve_costs("H200", gpu=True)
    eur = resolve_costs("H200", gpu=True, currency="eur")
    rate = currencies()["EUR"]["per_usd"]
    assert usd.gpu_hour == gpu_prices()["H200"]["usd_per_hour"]
    assert eur.currency == "EUR" and eur.gpu_hour == pytest.approx(usd.gpu_hour * rate)
    assert eur.electricity_per_kwh == pytest.approx(usd.electricity_per_kwh * rate)
    assert "RunPod" in usd.sources["gpu_hour"] or gpu_prices()["H200"]["provider"] in usd.sources["gpu_hour"]


def test_user_numbers_win_and_a_cpu_pays_no_gpu_hours() -> None:
    mine = resolve_costs("H200", gpu=True, currency="EUR", electricity_per_kwh=0.25, gpu_hour=1.5, region="FRA")
    assert (mine.electricity_per_kwh, mine.gpu_hour) == (0.25, 1.5)
    assert mine.carbon_g_per_kwh == grid_regions()["FRA"]["g_per_kwh"] and "France" in mine.sources["carbon"]
    assert resolve_costs("H200", gpu=True, region="FRA", carbon_g_per_kwh=10.0).carbon_g_per_kwh == 10.0
    assert resolve_costs("cpu-x86-server", gpu=False).gpu_hour is None
    assert resolve_costs("H200", gpu=True, gpu_hour=0.0).gpu_hour == 0.0  # owned hardware: electricity only


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"currency": "XYZ"}, "unknown currency 'XYZ'; known: CHF, EUR"),
    ({"region": "Atlantis"}, "unknown grid region 'Atlantis'"),
])
def test_unknown_currency_or_region_says_what_is_known(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_costs("H200", gpu=True, **kwargs)


def test_a_negative_or_infinite_price_is_refused() -> None:
    with pytest.raises(ModelError, match="gpu_hour must be a finite number >= 0"):
        Costs(gpu_hour=-1.0)
    with pytest.raises(ModelError, match="electricity_per_kwh"):
        Costs(electricity_per_kwh=float("inf"))


def test_columns_by_hand() -> None:
    table = pd.DataFrame({"energy_per_token_j": [0.36, 0.36], "tokens_per_s": [1000.0, 1000.0], "gpu_count": [1, 2]})
    out = Costs(electricity_per_kwh=0.2, gpu_hour=3.6, carbon_g_per_kwh=500.0).add_columns(table)
    # 1M tokens: 0.36e6 J = 0.1 kWh -> 0.02 in electricity, 50 g; 1000 s = 1/3.6 h per GPU -> 1.0 per GPU
    assert list(out["energy_cost_per_1m_tokens"]) == pytest.approx([0.02, 0.02])
    assert list(out["gpu_cost_per_1m_tokens"]) == pytest.approx([1.0, 2.0])
    assert list(out["cost_per_1m_tokens"]) == pytest.approx([1.02, 2.02])
    assert list(out["co2_per_1m_tokens_g"]) == pytest.approx([50.0, 50.0])
