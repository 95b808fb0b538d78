from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.model_fixtures import make_configurations
from wattcounts_pipeline.model.crossval import RESULT_COLUMNS, evaluate, largest_architectures
from wattcounts_pipeline.model.errors import ModelError
from wattcounts_pipeline.model.predictor import (
    DEFAULT_WIDENING,
    TARGETS,
    conformal_half_width,
    fit_predictor,
    fit_widening,
)
from wattcounts_pipeline.model.registry import (
    CARD_FILE,
    CV_CARD,
    CV_JSON,
    EVALUATION_FOLDER,
    METRICS_FILE,
    MODEL_FILE,
    cross_validate_release,
    list_releases,
    load,
    train,
)
from wattcounts_pipeline.model.trees import TreeEnsemble, fit_monotone

MODELS = ["meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
          "mistralai/Mixtral-8x7B-Instruct-v0.1"]


@pytest.fixture(scope="module")
def configurations() -> pd.DataFrame:
    return make_configurations(72, seed=1, gpus=["NVIDIA H100 80GB HBM3", "NVIDIA L40S"], setups=[0, 2, 4],
                               models=MODELS)


@pytest.fixture(scope="module")
def release(configurations: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(configurations, "v0.1.0", tmp_path_factory.mktemp("predictors"))


def test_json_trees_predict_exactly_like_scikit_learn() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x, x_new = rng.normal(size=(200, 5)), rng.normal(size=(500, 5))
    y = x[:, 0] ** 2 + np.sin(3 * x[:, 1]) + rng.normal(scale=0.1, size=200)
    ours = TreeEnsemble.from_dict(json.loads(json.dumps(fit_monotone(x, y, list("abcde"), {}).to_dict())))
    theirs = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.08, max_depth=3, min_samples_leaf=10,
                                           early_stopping=False, random_state=0).fit(x, y)
    assert np.array_equal(ours.predict(x_new), theirs.predict(x_new))


def test_too_few_rows_fit_the_mean_and_no_interval() -> None:
    ensemble = fit_monotone(np.zeros((3, 1)), np.array([1.0, 2.0, 3.0]), ["a"], {})
    assert ensemble.trees == () and ensemble.init == 2.0
    assert conformal_half_width(np.array([0.1, 0.2, 0.3]), 0.8) == float("inf")
    assert conformal_half_width(np.arange(1, 11) / 10, 0.8) == pytest.approx(0.9)  # ceil(11 * 0.8) = 9th of 10


def test_release_folder_has_model_card_and_metrics(release: Path, configurations: pd.DataFrame) -> None:
    assert release.name == "v0.1.0"
    assert sorted(p.name for p in release.iterdir()) == sorted([MODEL_FILE, CARD_FILE, METRICS_FILE])
    card = (release / CARD_FILE).read_text()
    metrics = json.loads((release / METRICS_FILE).read_text())
    assert "v0.1.0" in card and f"{len(configurations)} configurations rows" in card
    assert "| energy_per_token_j | log(energy_per_token_j / physics) |" in card and "log_compute_to_memory" in card
    assert metrics["n_training_rows"] == len(configurations) and len(metrics["model_sha256"]) == 64
    assert "cv" not in metrics and f"{EVALUATION_FOLDER}/{CV_CARD}" in card  # training does not cross-validate
    assert metrics["rows_per_target"]["quality_acc_mean"] == int((configurations["weights"] == "real").sum())


def test_cross_validation_is_written_beside_the_model_it_describes(configurations: pd.DataFrame,
                                                                   tmp_path: Path) -> None:
    folder = train(configurations, "v0.2.0", tmp_path)
    model_bytes = (folder / MODEL_FILE).read_bytes()
    cv = cross_validate_release(configurations, "v0.2.0", tmp_path, n_jobs=1)
    assert set(cv["grouping"]) == {"architecture", "hardware", "framework", "quantization", "largest"}
    record = json.loads((folder / EVALUATION_FOLDER / CV_JSON).read_text())
    assert record["model_sha256"] == json.loads((folder / METRICS_FILE).read_text())["model_sha256"]
    assert {r["grouping"] for r in record["cv"]} == {"architecture", "hardware", "framework", "quantization",
                                                     "largest"}
    assert "largest: held out Mixtral-8x7B, trained on the smaller architectures" in record["notes"]
    assert "| architecture | energy_per_token_j |" in (folder / EVALUATION_FOLDER / CV_CARD).read_text()
    assert (folder / MODEL_FILE).read_bytes() == model_bytes and load(tmp_path, "v0.2.0").release_tag == "v0.2.0"
    assert not [p for p in folder.iterdir() if p.name.startswith(".incoming-")]
    with pytest.raises(ModelError, match=r"trained on 72 configurations rows, the table given has 71"):
        cross_validate_release(configurations.iloc[1:], "v0.2.0", tmp_path, n_jobs=1)


def test_save_load_round_trip_predicts_identically(release: Path, configurations: pd.DataFrame) -> None:
    reference = fit_predictor(configurations, "v0.1.0")
    loaded = load(release.parent, "v0.1.0")
    a, b = reference.predict(configurations), loaded.predict(configurations)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert loaded.domain == reference.domain and loaded.release_tag == "v0.1.0"
    for spec in TARGETS:
        assert (b[f"{spec.name}_low"] <= b[spec.name]).all() and (b[spec.name] <= b[f"{spec.name}_high"]).all()


def test_in_sample_predictions_are_close(release: Path, configurations: pd.DataFrame) -> None:
    pred = load(release.parent).predict(configurations)
    for target in ("energy_per_token_j", "tokens_per_s", "tpot_p50_s"):
        mape = np.mean(np.abs(pred[target] - configurations[target]) / configurations[target])
        assert mape < 0.15, target


def test_release_holds_no_pickle_and_refuses_a_changed_model(release: Path, tmp_path: Path) -> None:
    assert not [p for p in release.iterdir() if p.suffix in (".pkl", ".pickle", ".joblib", ".skops")]
    copy = tmp_path / "v0.1.0"
    copy.mkdir()
    for name in (MODEL_FILE, METRICS_FILE):
        (copy / name).write_bytes((release / name).read_bytes())
    data = json.loads((copy / MODEL_FILE).read_text())
    data["models"][0]["ensemble"]["init"] += 1.0
    (copy / MODEL_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"sha256 .* does not match"):
        load(tmp_path, "v0.1.0")
    (copy / METRICS_FILE).unlink()
    with pytest.raises(ModelError, match="not found"):
        load(tmp_path, "v0.1.0")


def test_release_tags_are_checked_and_ordered(release: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="release tag"):
        train(pd.DataFrame(), "../escape", tmp_path)
    for tag in ("v0.9.0", "v0.10.0"):
        (tmp_path / tag).mkdir()
        for name in (MODEL_FILE, METRICS_FILE):
            (tmp_path / tag / name).write_bytes((release / name).read_bytes())
    assert list_releases(tmp_path) == ["v0.9.0", "v0.10.0"]
    assert load(tmp_path).release_tag == "v0.1.0"  # the newest folder holds a copy of the v0.1.0 model
    with pytest.raises(ModelError, match="no predictor release"):
        load(tmp_path / "empty")


def test_estimated_energy_and_random_weights_are_not_trained_on(configurations: pd.DataFrame) -> None:
    rows = configurations.copy()
    rows.loc[rows.index[:10], "energy_method"] = "estimate"
    predictor = fit_predictor(rows)
    assert predictor.models["energy_per_token_j"].n_rows == len(rows) - 10
    assert predictor.models["tokens_per_s"].n_rows == len(rows)
    assert predictor.models["quality_acc_mean"].n_rows == int((rows["weights"] == "real").sum())
    assert "Mixtral-8x7B" not in predictor.domain.quality_architectures


def test_rows_outside_the_catalogs_are_skipped_and_reported(configurations: pd.DataFrame, tmp_path: Path) -> None:
    rows = configurations.copy()
    rows.loc[rows.index[:3], "model"] = "gpt2"
    predictor = fit_predictor(rows)
    assert predictor.n_training_rows == len(rows) - 3


def test_evaluate_reports_groupings_models_and_skips_single_groups() -> None:
    one_framework = make_configurations(40, seed=2, gpus=["NVIDIA H100 80GB HBM3", "NVIDIA L40S"], setups=[2],
                                        models=MODELS[:3])
    table = evaluate(one_framework, n_jobs=1)
    assert list(table.columns) == RESULT_COLUMNS
    assert set(table["grouping"]) == {"architecture", "hardware", "largest"}
    assert any("framework: skipped" in note for note in table.attrs["notes"])
    assert any("quantization: skipped" in note for note in table.attrs["notes"])
    largest = table[table["grouping"] == "largest"]
    assert (largest["n_groups"] == 1).all()
    assert (largest["n_rows"] < len(one_framework)).all()
    assert set(table["model"]) == {"model", "roofline", "nearest"}
    assert table["mape"].ge(0).all() and table["coverage"].between(0, 1).all()
    assert set(table.loc[table["model"] == "roofline", "target"]) == {t.name for t in TARGETS if t.anchor}


def test_largest_holds_out_the_top_quarter_and_leaves_two_to_train_on() -> None:
    feats = pd.DataFrame({"arch_key": list("abcdefgh"), "log_total_params": np.log([1, 2, 3, 4, 5, 6, 70, 8])})
    assert largest_architectures(feats) == ["g", "h"]
    assert largest_architectures(feats.head(3)) == ["c"]
    assert largest_architectures(feats.head(2)) == []


@pytest.mark.parametrize("n_query, n_pool, exclude_self", [(300, 300, True), (300, 300, False), (7, 250, False)])
def test_blocked_nearest_neighbour_matches_a_row_by_row_search(n_query: int, n_pool: int, exclude_self: bool) -> None:
    """The cross-validation baseline's neighbour search runs in blocks (memory bounded at 10,000 rows); each
    query's answer must be the one a plain search gives: best tier (same device and framework, same framework,
    any), then the smallest L1 distance, first index on ties."""
    from wattcounts_pipeline.model.crossval import NEIGHBOUR_FEATURES, _nearest_index

    rng = np.random.default_rng(3)

    def frame(n: int) -> pd.DataFrame:
        data: dict[str, object] = {c: rng.integers(0, 4, n).astype(float) for c in NEIGHBOUR_FEATURES}  # many ties
        return pd.DataFrame({**data, "hardware_key": rng.choice(["h200", "cpu"], n),
                             "framework": rng.choice(["llamacpp", "transformers", "vllm"], n)})

    pool = frame(n_pool)
    query = pool if exclude_self else frame(n_query)
    got = _nearest_index(query, pool, exclude_self, block_rows=64)
    qx, px = query[NEIGHBOUR_FEATURES].to_numpy(), pool[NEIGHBOUR_FEATURES].to_numpy()
    q_fw, p_fw = list(query["framework"]), list(pool["framework"])
    q_hw, p_hw = list(query["hardware_key"]), list(pool["hardware_key"])
    for i in range(len(query)):
        best: tuple[float, float, int] | None = None
        for j in range(len(pool)):
            if exclude_self and i == j:
                continue
            tier = 0.0 if q_fw[i] == p_fw[j] and q_hw[i] == p_hw[j] else (1.0 if q_fw[i] == p_fw[j] else 2.0)
            dist = float(np.abs(qx[i] - px[j]).sum())
            if best is None or (tier, dist) < best[:2]:
                best = (tier, dist, j)
        assert best is not None and got[i] == best[2], i


def test_every_lazy_export_of_the_model_package_resolves() -> None:
    """`wattcounts_pipeline.model` names its exports' modules as strings: a renamed module must fail here."""
    from wattcounts_pipeline import model

    for name in model.__all__:
        assert getattr(model, name) is not None, name


def test_widening_slopes_are_fitted_from_how_error_grows_outside() -> None:
    rng = np.random.default_rng(1)
    size = np.concatenate([np.zeros(400), rng.uniform(0.1, 3.0, 400)])
    parts = np.c_[np.zeros(800), size]  # nothing never measured: the novelty slope keeps its default
    noise = np.abs(rng.normal(size=800))
    assert fit_widening(noise * (1 + 0.5 * size), parts, 0.8) == pytest.approx((1.0, 0.5), abs=0.15)
    assert fit_widening(noise * (1 + 2.0 * size), parts, 0.8)[1] == pytest.approx(2.0, abs=0.5)
    assert fit_widening(noise, parts, 0.8) == (1.0, 0.1)  # error that does not grow: the floor, still wider outside
    new = np.r_[np.zeros(600), np.ones(200)]  # 200 rows of an engine never measured, whose error is 3x
    assert fit_widening(noise * (1 + 2.0 * new), np.c_[new, np.zeros(800)], 0.8)[0] == pytest.approx(2.0, abs=0.5)
    few = np.r_[np.zeros(790), np.ones(10)]  # too few rows outside to say: the default
    assert fit_widening(noise * (1 + 3 * few), np.c_[few, few], 0.8) == DEFAULT_WIDENING
    assert fit_widening(np.r_[noise[:-1], np.inf], parts, 0.8) == DEFAULT_WIDENING
    assert fit_widening(np.empty(0), np.empty((0, 2)), 0.8) == DEFAULT_WIDENING
