from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.model_fixtures import make_configurations
from wattcounts_pipeline.model.costs import Costs
from wattcounts_pipeline.model.errors import CatalogError, ModelError
from wattcounts_pipeline.model.plot import plot_front
from wattcounts_pipeline.model.predictor import Predictor, fit_predictor
from wattcounts_pipeline.model.recommendation import (
    SCENARIOS,
    Candidate,
    Scenario,
    pareto_mask,
    recommend,
)

# The synthetic fixtures' quality is not on the published scale the built-in minimums are set on: the tests of
# the front's mechanics drop the minimum.
NO_FLOOR = {name: replace(s, min_quality=None) for name, s in SCENARIOS.items()}
OBJECTIVES = [("energy_per_token_j", 1), ("cost_per_1m_tokens", 1), ("latency_s", 1), ("quality_acc_mean", -1)]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return fit_predictor(make_configurations(120, seed=3), "test")


def _dominates(a: pd.Series, b: pd.Series) -> bool:
    pairs = [(sign * a[c], sign * b[c]) for c, sign in OBJECTIVES]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def test_pareto_mask() -> None:
    values = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [1, 5]], dtype=float)
    assert pareto_mask(values).tolist() == [True, True, False, True, True]


def test_front_is_pareto_optimal_and_covers_every_feasible_candidate(predictor: Predictor) -> None:
    rec = recommend(predictor, "H100-SXM", NO_FLOOR["batch-summarization"])
    front, feasible = rec.front, rec.candidates[rec.candidates["meets_slo"] & rec.candidates["meets_quality"]]
    assert len(front) >= 2
    for _, a in front.iterrows():
        assert not any(_dominates(b, a) for _, b in front.iterrows())
    front_keys = set(map(tuple, front[["architecture", "quantization", "framework", "mode", "gpu_count"]].values))
    for _, c in feasible.iterrows():
        if tuple(c[["architecture", "quantization", "framework", "mode", "gpu_count"]]) not in front_keys:
            assert any(_dominates(f, c) for _, f in front.iterrows())
    assert rec.best is not None and rec.best["energy_per_token_j"] == feasible["energy_per_token_j"].min()


def test_cost_is_gpu_hours_plus_electricity_and_carbon_follows_energy(predictor: Predictor) -> None:
    costs = Costs(electricity_per_kwh=0.30, gpu_hour=2.5, carbon_g_per_kwh=100.0)
    rec = recommend(predictor, "H100-SXM", NO_FLOOR["chat"], costs=costs)
    f = rec.front
    kwh = f["energy_per_token_j"] * 1e6 / 3.6e6
    gpu_hours = 1e6 / f["tokens_per_s"] / 3600 * f["gpu_count"]
    assert np.allclose(f["energy_cost_per_1m_tokens"], kwh * 0.30)
    assert np.allclose(f["gpu_cost_per_1m_tokens"], gpu_hours * 2.5)
    assert np.allclose(f["cost_per_1m_tokens"], kwh * 0.30 + gpu_hours * 2.5)
    assert np.allclose(f["co2_per_1m_tokens_g"], kwh * 100.0)
    assert (f["gpu_cost_per_1m_tokens"] > f["energy_cost_per_1m_tokens"]).all()  # the GPU-hour dominates
    by_cost = recommend(predictor, "H100-SXM", NO_FLOOR["chat"], costs=costs, best_by="cost")
    feasible = by_cost.candidates[by_cost.candidates["meets_slo"] & by_cost.candidates["meets_quality"]]
    assert by_cost.best is not None and by_cost.best["cost_per_1m_tokens"] == feasible["cost_per_1m_tokens"].min()


def test_latency_slo_filters_the_best(predictor: Predictor) -> None:
    loose = recommend(predictor, "H100-SXM", replace(NO_FLOOR["chat"], tpot_slo_s=None, ttft_slo_s=None))
    slo_s = float(loose.candidates["tpot_p50_s"].median())
    strict = recommend(predictor, "H100-SXM", replace(NO_FLOOR["chat"], tpot_slo_s=slo_s, ttft_slo_s=None))
    assert strict.best is not None and strict.best["tpot_p50_s"] <= slo_s
    assert (strict.front["tpot_p50_s"] <= slo_s).all()
    impossible = recommend(predictor, "H100-SXM", replace(NO_FLOOR["chat"], tpot_slo_s=1e-9))
    assert impossible.best is None and any("no candidate meets" in w for w in impossible.warnings)


def test_builtin_scenarios_ask_for_a_minimum_quality() -> None:
    assert all(s.min_quality is not None and 0 < s.min_quality < 1 for s in SCENARIOS.values())


def test_min_quality_filters_the_best(predictor: Predictor) -> None:
    base = recommend(predictor, "H100-SXM", NO_FLOOR["batch-summarization"])
    floor = float(base.candidates["quality_acc_mean"].quantile(0.7))
    rec = recommend(predictor, "H100-SXM", replace(SCENARIOS["batch-summarization"], min_quality=floor))
    assert rec.best is not None and rec.best["quality_acc_mean"] >= floor
    assert (rec.front["quality_acc_mean"] >= floor).all()
    assert rec.best["energy_per_token_j"] >= base.best["energy_per_token_j"]
    none = recommend(predictor, "H100-SXM", replace(SCENARIOS["batch-summarization"], min_quality=0.99))
    assert none.best is None


def test_measured_scenario_on_measured_hardware_has_no_range_warning(predictor: Predictor) -> None:
    scenario = Scenario("inside", input_tokens=512, output_tokens=64, concurrency=4)
    rec = recommend(predictor, "H100-SXM", scenario)
    assert not [w for w in rec.warnings if "outside the measured range" in w or "never measured" in w]


def test_out_of_range_scenarios_and_hardware_warn(predictor: Predictor) -> None:
    far = Scenario("far", input_tokens=100_000, output_tokens=64, concurrency=512)
    rec = recommend(predictor, "L4", far)
    text = "\n".join(rec.warnings)
    assert "hardware never measured: L4" in text
    assert "input_tokens [100000.0] outside the measured range" in text
    assert "batch_size [512] outside the measured range" in text
    assert "exceed L4 memory" in text and rec.best is None and rec.front.empty


def test_unmeasured_candidate_architecture_warns(predictor: Predictor) -> None:
    rec = recommend(predictor, "H100-SXM", "chat", candidates=[
        Candidate("Phi-3-mini", "BF16", "vllm", "compiled"), Candidate("Llama-3.1-8B", "BF16", "vllm", "compiled")])
    assert any("architectures never measured: Phi-3-mini" in w for w in rec.warnings)
    assert set(rec.candidates["architecture"]) == {"Phi-3-mini", "Llama-3.1-8B"}


def test_request_rate_sets_batch_by_littles_law(predictor: Predictor) -> None:
    scenario = Scenario("rate", input_tokens=512, output_tokens=256, request_rate_per_s=4.0)
    rec = recommend(predictor, "H100-SXM", scenario)
    settled = rec.candidates[rec.candidates["batch_size"] < 1024]
    assert len(settled) and (settled["batch_size"] >= 1).all()
    implied = np.ceil(4.0 * settled["latency_s"])
    assert (np.abs(settled["batch_size"] - implied) <= np.maximum(1, 0.25 * implied)).mean() > 0.8


def test_unknown_names_raise_clearly(predictor: Predictor) -> None:
    with pytest.raises(CatalogError, match=r"unknown hardware 'H900'.*H100-SXM"):
        recommend(predictor, "H900", "chat")
    with pytest.raises(ModelError, match=r"unknown scenario 'gaming'.*chat, batch-summarization, rag"):
        recommend(predictor, "H100-SXM", "gaming")
    with pytest.raises(ModelError, match="exactly one of concurrency or request_rate_per_s"):
        Scenario("both", 10, 10, concurrency=1, request_rate_per_s=1.0)


def test_builtin_scenarios_run(predictor: Predictor) -> None:
    for name in SCENARIOS:
        rec = recommend(predictor, "A100-80GB", name)
        assert not rec.front.empty and not math.isnan(rec.front["energy_per_token_j"].iloc[0])


def test_plot_front_writes_a_png(predictor: Predictor, tmp_path: Path) -> None:
    rec = recommend(predictor, "H100-SXM", "chat")
    png = plot_front(rec, tmp_path / "front.png")
    assert png.startswith(b"\x89PNG") and (tmp_path / "front.png").read_bytes() == png


def test_without_quality_data_quality_is_left_out_and_said() -> None:
    rows = make_configurations(40, seed=6, gpus=["NVIDIA H100 80GB HBM3"]).assign(weights="random")
    predictor = fit_predictor(rows)
    assert "quality_acc_mean" not in predictor.models
    rec = recommend(predictor, "H100-SXM", replace(SCENARIOS["chat"], min_quality=0.5))
    assert predictor.known_quality.empty  # measured quality on random weights is never taken as known
    assert any("no candidate has a quality" in w and "not enforced" in w for w in rec.warnings)
    assert rec.best is not None and rec.front["quality_acc_mean"].isna().all()


def test_candidate_larger_than_its_setup_ever_measured_says_why() -> None:
    small = fit_predictor(make_configurations(120, seed=5, models=[
        "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"]),
        "small")
    quant, framework, mode, gpus = next(s for s in small.domain.setups if s[3] == 1)
    scenario = Scenario("inside", input_tokens=512, output_tokens=64, concurrency=4)
    rec = recommend(small, "H100-SXM", scenario, candidates=[
        Candidate("Qwen2.5-14B", quant, framework, mode, gpus), Candidate("Llama-3.1-8B", quant, framework, mode, gpus)])
    why = dict(zip(rec.candidates["architecture"], rec.candidates["extrapolation"], strict=True))
    assert why["Llama-3.1-8B"] == ""
    assert "architecture Qwen2.5-14B never measured" in why["Qwen2.5-14B"]
    assert f"14.8B: larger than any model measured as {quant} on {framework} ({mode}, 1 GPU(s)) (largest 8.0B)" \
        in why["Qwen2.5-14B"]
    assert any("outside the model sizes measured in their setup" in w for w in rec.warnings)
    # a predictor saved before the size spans existed loads and simply has none
    old = small.domain.to_dict()
    del old["setup_params_b"]
    assert type(small.domain).from_dict(old).setup_params_b == {}
