"""Issue #25: evaluation splits that match use (largest, framework, format, host) and a predictor that stays
physical outside its training range: monotone, bounded by the roofline, intervals that widen and say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.model_fixtures import make_configurations
from wattcounts_pipeline.core.hardware import hardware_suffix
from wattcounts_pipeline.model.crossval import fold_predictions, held_out_folds, summarize
from wattcounts_pipeline.model.errors import ModelError
from wattcounts_pipeline.model.features import build_features
from wattcounts_pipeline.model.hosts import attach_hosts, folder_hosts
from wattcounts_pipeline.model.predictor import Predictor, fit_predictor, training_table
from wattcounts_pipeline.model.recommendation import Candidate, Scenario, recommend
from wattcounts_pipeline.model.trees import fit_monotone

SMALL = ["meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"]


@pytest.fixture(scope="module")
def small() -> Predictor:
    """Trained on ≤ 8B models, one device, two engine setups."""
    return fit_predictor(make_configurations(150, seed=11, gpus=["NVIDIA H100 80GB HBM3"], setups=[0, 2],
                                             models=SMALL), "small")


def _query(model: str, batch: list[int], quantization: str = "BF16", framework: str = "vllm") -> pd.DataFrame:
    return pd.DataFrame({"model": model, "quantization": quantization, "dtype": "", "framework": framework,
                         "mode": "compiled" if framework == "vllm" else "eager", "hardware": "H100-SXM",
                         "gpu_count": 1, "batch_size": batch, "input_tokens": 512.0, "output_tokens": 256.0})


def test_monotone_trees_are_the_histogram_gbm_and_keep_their_direction() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x, x_new = rng.normal(size=(300, 3)), rng.normal(size=(1000, 3))
    y = -x[:, 0] + np.sin(4 * x[:, 0]) + np.sin(3 * x[:, 1]) + rng.normal(scale=0.1, size=300)  # not monotone in a
    ours = fit_monotone(x, y, ["a", "b", "c"], {"a": -1})
    theirs = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.08, max_depth=3, min_samples_leaf=10,
                                           monotonic_cst=[-1, 0, 0], early_stopping=False, random_state=0).fit(x, y)
    assert np.array_equal(ours.predict(x_new), theirs.predict(x_new))
    grid = np.column_stack([np.linspace(-3, 3, 200), np.full(200, 0.3), np.zeros(200)])
    assert (np.diff(ours.predict(grid)) <= 0).all()
    assert fit_monotone(x[:5], y[:5], ["a", "b", "c"], {}).trees == ()  # too few rows: the mean


def test_predictions_are_monotone_in_batch_and_size(small: Predictor) -> None:
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for model in ("Llama-3.1-8B", "Qwen2.5-14B", "Llama-3.1-70B"):  # inside, beyond, far beyond the sizes trained
        p = small.predict(_query(model, batches))
        assert (np.diff(p["energy_per_token_j"]) <= 1e-12).all(), model
        assert (np.diff(p["tokens_per_s"]) >= -1e-9).all(), model
    for family in (("Qwen2.5-0.5B", "Qwen2.5-1.5B", "Qwen2.5-7B", "Qwen2.5-14B"),
                   ("Llama-3.2-1B", "Llama-3.2-3B", "Llama-3.1-8B", "Llama-3.1-70B")):
        sizes = small.predict(pd.concat([_query(m, [8]) for m in family]))
        assert (np.diff(sizes["energy_per_token_j"].to_numpy()) > 0).all(), family


def test_predictions_never_beat_the_roofline(small: Predictor) -> None:
    feats = build_features(_query("Llama-3.1-70B", [1, 8, 64, 512]))
    p = small.predict_features(feats)
    bounds = small.physics.bounds(feats)
    for target, (low, high) in bounds.items():
        for column in (target, f"{target}_low", f"{target}_high"):
            assert (p[column].to_numpy() >= low - 1e-15).all() and (p[column].to_numpy() <= high).all(), column
    assert (bounds["energy_per_token_j"][0] > 0).all()  # idle power over the roofline time: a real floor
    assert (p["tpot_p50_s"] >= feats["roofline_step_s"]).all()


def test_intervals_widen_outside_the_training_range_and_recommend_says_why(small: Predictor) -> None:
    p = small.predict(pd.concat([_query("Llama-3.1-8B", [8]), _query("Llama-3.1-70B", [8])]))
    ratio = (p["energy_per_token_j_high"] / p["energy_per_token_j_low"]).to_numpy()
    assert ratio[1] > ratio[0] > 1
    parts = small.domain.distance_parts(build_features(pd.concat([_query("Llama-3.1-8B", [8]),
                                                                  _query("Llama-3.1-70B", [8]),
                                                                  _query("Llama-3.1-8B", [8], "Q4_K_M", "llamacpp")])))
    assert (parts[0] == 0).all()
    assert parts[1, 0] == 0  # a bigger model is no novelty, only e-folds beyond the largest measured:
    assert parts[1, 1] == pytest.approx(np.log(70.55 / 8.03), rel=1e-3)
    assert parts[2, 0] >= 3  # framework, format and setup never measured
    rec = recommend(small, "H100-SXM", Scenario("s", input_tokens=512, output_tokens=256, concurrency=8),
                    candidates=[Candidate("Qwen2.5-14B", "BF16", "vllm", "compiled"),
                                Candidate("Llama-3.1-8B", "BF16", "vllm", "compiled")])
    row = rec.candidates.set_index("architecture")
    assert "14.8B: larger than any model measured as BF16 on vllm (compiled, 1 GPU(s)) (largest 8.0B)" \
        in row.loc["Qwen2.5-14B", "extrapolation"]
    slope = small.models["energy_per_token_j"].widening[1]  # per e-fold, fitted out of fold (fit_widening)
    assert slope > 0
    assert row.loc["Qwen2.5-14B", "interval_widening"] == pytest.approx(1 + slope * np.log(14.77 / 8.03), rel=1e-3)
    assert row.loc["Llama-3.1-8B", "interval_widening"] == 1 and row.loc["Llama-3.1-8B", "extrapolation"] == ""


def test_held_out_folds_cover_hosts_and_skip_unknown_ones() -> None:
    feats = pd.DataFrame({"arch_key": list("aabbcc"), "hardware_key": "H200", "framework": ["x", "y"] * 3,
                          "quant_key": "BF16", "log_total_params": np.log([1, 1, 2, 2, 3, 3]),
                          "host_key": ["h1", "h1", "h2", "", "h2", "h3"]})
    folds, notes = held_out_folds(feats, ("host", "hardware", "framework"))
    hosts = {group: mask.tolist() for grouping, group, _, mask in folds if grouping == "host"}
    assert hosts == {"h1": [True, True, False, False, False, False], "h2": [False, False, True, False, True, False],
                     "h3": [False] * 5 + [True]}  # the row with no host is never held out
    assert {g for g, *_ in folds} == {"host", "framework"} and any("hardware: skipped" in n for n in notes)
    assert any("host: skipped, the rows do not say" in n
               for n in held_out_folds(feats.drop(columns="host_key"), ("host",))[1])
    with pytest.raises(ValueError, match="unknown groupings"):
        held_out_folds(feats, ("galaxy",))


def test_summaries_per_split_and_per_framework() -> None:
    predictions = pd.DataFrame({
        "grouping": "architecture", "held_out": ["a", "a", "b", "b"], "row": [0, 1, 2, 3], "target": "t",
        "model": "model", "y": [1.0, 2.0, 4.0, 1.0], "point": [1.1, 2.0, 2.0, 1.0],
        "low": [0.9, 1.0, 3.0, 0.5], "high": [1.2, 3.0, 5.0, 0.9], "framework": ["x", "x", "y", "y"]})
    overall = summarize(predictions).iloc[0]
    assert overall["mape"] == pytest.approx((10 + 0 + 50 + 0) / 4) and overall["median_ape"] == pytest.approx(5)
    assert overall["coverage"] == 0.75 and overall["n_rows"] == 4 and overall["n_groups"] == 2
    by = summarize(predictions, ("framework",)).set_index("framework")
    assert by.loc["x", "coverage"] == 1.0 and by.loc["y", "coverage"] == 0.5 and by.loc["y", "mape"] == 25


def test_folder_hosts_take_the_folder_with_most_runs(tmp_path: Path) -> None:
    def folder(name: str, configs: list[str], card: str = "1x NVIDIA H200") -> Path:
        (tmp_path / name).mkdir()
        pd.DataFrame({"configuration_id": configs, "run_id": [f"{name}-{i}" for i in range(len(configs))],
                      "hardware_id": card, "started_at": f"2026-12-0{len(list(tmp_path.iterdir()))}T00:00:00",
                      "source": "watt-counts"}).to_parquet(tmp_path / name / "runs.parquet")
        return tmp_path / name

    h100 = "1x NVIDIA H100 80GB HBM3"
    hosts = folder_hosts([folder("call1", ["c1", "c1", "c2"]), folder("call2", ["c2", "c2", "c3"]),
                          folder("call3", ["c3"], card=h100)])
    # c3 measured on a second card later is the release's configuration c3-<hardware suffix>, with its own host
    assert hosts.to_dict() == {"c1": "call1", "c2": "call2", "c3": "call2", f"c3-{hardware_suffix(h100)}": "call3"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"empty/runs.parquet: no runs table"):
        folder_hosts([tmp_path / "empty"])
    (tmp_path / "old").mkdir()
    pd.DataFrame({"configuration_id": ["c1"], "run_id": ["r"]}).to_parquet(tmp_path / "old" / "runs.parquet")
    with pytest.raises(ModelError, match=r"old/runs.parquet: no column hardware_id, source, started_at"):
        folder_hosts([tmp_path / "old"])


def test_leave_one_host_out_runs_on_real_folds() -> None:
    configurations = make_configurations(60, seed=4, gpus=["NVIDIA H100 80GB HBM3"], setups=[0, 2])
    rows, feats, _ = training_table(configurations)
    hosts = pd.Series(np.where(np.arange(len(rows)) % 3 == 0, "host-a", "host-b"), index=rows["configuration_id"])
    feats = attach_hosts(rows, feats, hosts)
    folds, _ = held_out_folds(feats, ("host",))
    predictions = fold_predictions(rows, feats, folds, n_jobs=1)
    table = summarize(predictions)
    energy = table[(table["target"] == "energy_per_token_j") & (table["model"] == "model")].iloc[0]
    assert energy["n_rows"] == len(rows) and energy["n_groups"] == 2
    assert 0 <= energy["coverage"] <= 1 and np.isfinite(energy["mape"])
