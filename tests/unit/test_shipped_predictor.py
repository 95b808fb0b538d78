"""The predictor the package ships: it loads (sha256 checked), it was trained on the data in this repository as it
is now, and a fresh install recommends with it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.helpers import REPO
from wattcounts_pipeline.cli import main
from wattcounts_pipeline.model.registry import SHIPPED_DIR, list_releases, load


def _ship_script():
    spec = importlib.util.spec_from_file_location("ship_predictor", REPO / "scripts" / "ship_predictor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_shipped_predictor_trained_on_the_recorded_data_as_it_is() -> None:
    (tag,) = list_releases(SHIPPED_DIR)
    folders = sorted(p for p in (REPO / "data" / "measurements").iterdir() if p.is_dir())
    assert tag == f"recorded-{_ship_script().data_digest(folders)}", \
        "data/measurements changed: run `.venv/bin/python scripts/ship_predictor.py` and commit the result"
    predictor = load(SHIPPED_DIR)
    assert predictor.release_tag == tag and "energy_per_token_j" in predictor.models
    assert predictor.n_training_rows >= 500
    assert sum(f.stat().st_size for f in (SHIPPED_DIR / tag).iterdir()) < 1_000_000  # small, JSON, no pickle


def test_a_fresh_install_recommends_with_the_shipped_predictor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "fresh"))
    assert main(["recommend", "--hardware", "H200", "--scenario", "chat", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["predictor_shipped"] is True and doc["predictor_release"].startswith("recorded-")
    assert doc["best"]["gpu_cost_per_1m_tokens"] > doc["best"]["energy_cost_per_1m_tokens"] > 0


def test_the_retired_fp8_path_trains_the_model_but_is_never_recommended() -> None:
    from wattcounts_pipeline.model.recommendation import default_candidates

    predictor = load(SHIPPED_DIR)
    assert any(q == "FP8" and f == "transformers" for q, f, _, _ in predictor.domain.setups)  # its rows still teach
    candidates = default_candidates(predictor, on_gpu=True)
    assert candidates and not any(c.quantization == "FP8" and c.framework == "transformers" for c in candidates)
    assert any(c.quantization == "TORCHAO_FP8_ROW" for c in candidates)  # the float8 transformers users run
