from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.model_fixtures import make_configurations
from wattcounts_pipeline.cli import main
from wattcounts_pipeline.model.registry import train


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("predictors")
    rows = make_configurations(36, seed=4, gpus=["NVIDIA H100 80GB HBM3"], setups=[0, 2],
                               models=["meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
                                       "Qwen/Qwen2.5-7B-Instruct"])
    train(rows, "v0.1.0", out)
    return out


def test_recommend_prints_front_and_best(model_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["recommend", "--hardware", "H100-SXM", "--scenario", "chat", "--model-dir", str(model_dir),
                 "--release", "v0.1.0", "--min-quality", "0.3", "--price", "0.2", "--carbon", "300",
                 "--plot", str(tmp_path / "front.png")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Scenario chat on H100-SXM" in out and "Pareto front" in out and "J/token" in out
    assert "Best: " in out and "0.2 USD/kWh" in out and "quality ≥ 0.3" in out
    assert (tmp_path / "front.png").read_bytes().startswith(b"\x89PNG")


def test_recommend_defaults_to_the_newest_release_and_warns(model_dir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--hardware", "L4", "--scenario", "rag", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "Predictor v0.1.0" in out and "warning: hardware never measured: L4" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--hardware", "H900"], "unknown hardware 'H900'"),
    (["--hardware", "H100-SXM", "--scenario", "gaming"], "unknown scenario 'gaming'"),
    (["--hardware", "H100-SXM", "--release", "v9.9.9"], "release 'v9.9.9' not found"),
])
def test_recommend_errors_exit_2(model_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                 message: str) -> None:
    assert main(["recommend", "--model-dir", str(model_dir), *args]) == 2
    assert message in capsys.readouterr().err


def test_recommend_without_any_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--hardware", "H100-SXM", "--model-dir", str(tmp_path)]) == 2
    assert "no predictor release" in capsys.readouterr().err
