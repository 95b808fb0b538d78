"""A setup's quality for the recommendation: the most trusted source the release has, said with its source."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tests.helpers.model_fixtures import make_configurations
from wattcounts_pipeline.model.errors import ModelError
from wattcounts_pipeline.model.known_quality import apply_known_quality, known_quality
from wattcounts_pipeline.model.predictor import Predictor, fit_predictor
from wattcounts_pipeline.model.recommendation import SCENARIOS, recommend

SMALL, LARGE = "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"


def _gpu_rows_with_derived_quality() -> pd.DataFrame:
    """Random-weight GPU rows (no measured quality, as on the H200) whose quality is derived per model."""
    rows = make_configurations(60, seed=8, gpus=["NVIDIA H100 80GB HBM3"], models=[SMALL, LARGE], setups=[1, 2])
    value = np.where(rows["model"] == LARGE, 0.62, 0.31)
    return rows.assign(weights="random", quality_acc_mean=value, quality_source="derived",
                       quality_acc_ci95_low=value - 0.04, quality_acc_ci95_high=value + 0.04,
                       quality_tasks="arc_challenge,mmlu")


@pytest.fixture(scope="module")
def derived_predictor() -> Predictor:
    return fit_predictor(_gpu_rows_with_derived_quality(), "derived")


def test_most_trusted_source_wins_and_random_weights_never_give_a_measured_value() -> None:
    from wattcounts_pipeline.model.features import featurize
    rows = _gpu_rows_with_derived_quality().head(4).reset_index(drop=True)
    rows = pd.concat([rows, rows.iloc[[0]].assign(weights="real", quality_source="measured", quality_acc_mean=0.5,
                                                  quality_acc_ci95_low=0.45, quality_acc_ci95_high=0.55),
                      rows.iloc[[1]].assign(quality_source="measured", quality_acc_mean=0.9)], ignore_index=True)
    feats, _ = featurize(rows, skip_unknown=True)
    table = known_quality(rows.loc[feats.index], feats)
    first = feats.iloc[0]
    row = table[(table["architecture"] == first["arch_key"]) & (table["quantization"] == first["quant_key"])
                & (table["framework"] == first["framework"])].iloc[0]
    assert row["quality_source"] == "measured" and row["quality_acc_mean"] == 0.5  # measured beats derived
    assert 0.9 not in set(table["quality_acc_mean"])  # "measured" on random weights is not taken
    assert set(table["quality_source"]) <= {"measured", "derived"}


def test_untrusted_sources_count_as_unknown() -> None:
    known = pd.DataFrame([{"architecture": "a", "quantization": "BF16", "framework": "vllm", "quality_acc_mean": 0.6,
                           "quality_acc_mean_low": 0.5, "quality_acc_mean_high": 0.7, "quality_source": "derived",
                           "quality_tasks": "mmlu"}])
    table = pd.DataFrame({"architecture": ["a", "b"], "quantization": ["BF16"] * 2, "framework": ["vllm"] * 2,
                          "quality_acc_mean": [0.2, 0.3], "quality_acc_mean_low": [0.1, 0.2],
                          "quality_acc_mean_high": [0.3, 0.4]})
    trusted_all = apply_known_quality(table, known)
    assert list(trusted_all["quality_source"]) == ["derived", "predicted"]
    assert list(trusted_all["quality_acc_mean"]) == [0.6, 0.3]
    measured_only = apply_known_quality(table, known, ("measured",))
    assert measured_only["quality_acc_mean"].isna().all() and measured_only["quality_source"].isna().all()


def test_min_quality_picks_a_gpu_setup_through_derived_quality_and_says_so(derived_predictor: Predictor) -> None:
    assert "quality_acc_mean" not in derived_predictor.models  # no real weights: no quality model at all
    rec = recommend(derived_predictor, "H100-SXM", replace(SCENARIOS["chat"], min_quality=0.5))
    assert rec.best is not None
    assert rec.best["architecture"] == "Llama-3.1-8B" and rec.best["quality_source"] == "derived"
    assert rec.best["quality_acc_mean"] == pytest.approx(0.62)
    without = recommend(derived_predictor, "H100-SXM", replace(SCENARIOS["chat"], min_quality=0.5),
                        quality_sources=("measured", "published"))
    assert without.front["quality_acc_mean"].isna().all()  # as with no quality at all: said, not enforced
    assert any("no candidate has a quality from the trusted sources (measured, published)" in w and "not enforced"
               in w for w in without.warnings)


def test_known_quality_survives_the_predictor_file(derived_predictor: Predictor) -> None:
    again = Predictor.from_dict(derived_predictor.to_dict())
    pd.testing.assert_frame_equal(again.known_quality, derived_predictor.known_quality)


def test_unknown_quality_source_is_refused(derived_predictor: Predictor) -> None:
    with pytest.raises(ModelError, match="choose from measured, published, derived, predicted"):
        recommend(derived_predictor, "H100-SXM", "chat", quality_sources=("vibes",))
