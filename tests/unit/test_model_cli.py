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
    # on an L4 nothing meets rag's TTFT: the front and the warnings still print, and the exit code says so
    assert main(["recommend", "--hardware", "L4", "--scenario", "rag", "--model-dir", str(model_dir)]) == 1
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


@pytest.mark.parametrize(("args", "message"), [
    (["--min-quality", "1.5"], "argument --min-quality: 1.5 is not between 0 and 1"),
    (["--price", "-1"], "argument --price: -1 is negative"),
    (["--carbon", "nan"], "argument --carbon: 'nan' is not a finite number"),
    (["--price", "cheap"], "argument --price: 'cheap' is not a number"),
    (["--quality-source", "measured,vibes"], "argument --quality-source: vibes: choose from measured, published"),
])
def test_bad_numbers_name_the_flag_and_exit_2(model_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                             message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["recommend", "--hardware", "H100-SXM", "--model-dir", str(model_dir), *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_an_impossible_need_exits_1_and_names_it(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recommend", "--hardware", "H100-SXM", "--scenario", "chat", "--min-quality", "0.99",
                 "--model-dir", str(model_dir)])
    captured = capsys.readouterr()
    assert code == 1
    assert "no candidate meets every need" in captured.err and "meet quality ≥ 0.99" in captured.err
    assert "closest: " in captured.err and "Best: none" in captured.out


def test_json_output_is_one_document(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["recommend", "--hardware", "H100-SXM", "--scenario", "chat", "--model-dir", str(model_dir),
                 "--json", "--min-quality", "0"]) == 0  # synthetic quality: below chat's built-in minimum
    doc = json.loads(capsys.readouterr().out)
    assert doc["hardware"] == "H100-SXM" and doc["scenario"]["name"] == "chat" and doc["unmet_needs"] is None
    assert doc["best"]["energy_per_token_j"] == min(row["energy_per_token_j"] for row in doc["front"])


def test_min_quality_without_a_quality_model_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = make_configurations(24, seed=5, gpus=["NVIDIA H100 80GB HBM3"], setups=[0],
                               models=["meta-llama/Llama-3.2-1B-Instruct", "Qwen/Qwen2.5-7B-Instruct"])
    train(rows.assign(quality_acc_mean=float("nan")), "v0.0.1", tmp_path)
    assert main(["recommend", "--hardware", "H100-SXM", "--model-dir", str(tmp_path), "--min-quality", "0.5"]) == 2
    assert "--min-quality 0.5 cannot be enforced" in capsys.readouterr().err


def test_min_quality_through_derived_quality_says_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """Random-weight GPU rows carry no measured quality; a derived value lets --min-quality pick one, and says so;
    trusting measured quality only, the same request cannot be enforced (exit 2)."""
    rows = make_configurations(36, seed=4, gpus=["NVIDIA H100 80GB HBM3"], setups=[0, 2],
                               models=["meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"])
    value = (rows["model"] == "meta-llama/Llama-3.1-8B-Instruct").astype(float).to_numpy() * 0.3 + 0.3
    train(rows.assign(weights="random", quality_acc_mean=value, quality_source="derived",
                      quality_acc_ci95_low=value - 0.05, quality_acc_ci95_high=value + 0.05, quality_tasks="mmlu"),
          "v0.0.2", tmp_path)
    base = ["recommend", "--hardware", "H100-SXM", "--scenario", "chat", "--model-dir", str(tmp_path),
            "--min-quality", "0.5"]
    assert main(base) == 0
    out = capsys.readouterr().out
    best = next(line for line in out.splitlines() if line.startswith("Best: "))
    assert "Llama-3.1-8B" in best and "quality 0.6 [0.55, 0.65] (derived on mmlu)" in best
    assert "quality from" in out  # the front's column
    assert main([*base, "--quality-source", "measured"]) == 2
    assert "knows no quality from measured" in capsys.readouterr().err


def test_train_from_a_release_folder_then_recommend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A release folder (release.json + data/configurations.parquet; synthetic rows here) -> a predictor folder
    that `recommend` finds by itself."""
    release = tmp_path / "releases" / "v0.3.0"
    (release / "data").mkdir(parents=True)
    (release / "release.json").write_text('{"version": "v0.3.0"}')
    make_configurations(36, seed=4, gpus=["NVIDIA H100 80GB HBM3"], setups=[0, 2]).to_parquet(
        release / "data" / "configurations.parquet")
    out = tmp_path / "predictors"
    assert main(["train", str(release), "--model-dir", str(out)]) == 0
    assert "predictor v0.3.0 trained on 36 configurations" in capsys.readouterr().out and (out / "v0.3.0").is_dir()
    assert main(["recommend", "--hardware", "H100-SXM", "--scenario", "chat", "--model-dir", str(out), "--json",
                 "--min-quality", "0"]) == 0
    assert '"predictor_release": "v0.3.0"' in capsys.readouterr().out


def test_train_refuses_a_folder_that_is_no_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a dataset release folder" in capsys.readouterr().err


def test_min_quality_zero_drops_the_scenarios_minimum_even_without_quality(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    rows = make_configurations(24, seed=5, gpus=["NVIDIA H100 80GB HBM3"], setups=[0],
                               models=["meta-llama/Llama-3.2-1B-Instruct", "Qwen/Qwen2.5-7B-Instruct"])
    train(rows.assign(quality_acc_mean=float("nan")), "v0.0.1", tmp_path)
    assert main(["recommend", "--hardware", "H100-SXM", "--model-dir", str(tmp_path), "--min-quality", "0"]) == 0
    assert "quality ≥" not in capsys.readouterr().out.splitlines()[0]
