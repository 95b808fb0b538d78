"""Multi-GPU and lower-precision code paths, run for real on the CPU: the layer split of a pipeline,
FP8 linears, per-GPU energy in rows and configurations, hardware pinning and sharded sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.helpers import REPO
from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.backends.fp8 import Fp8Linear, quantize_model_fp8, quantize_rowwise
from wattcounts_pipeline.backends.transformers_backend import balanced_device_map, build_pipeline
from wattcounts_pipeline.core.errors import BackendError, SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload, load_experiment
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.measure.run import check_hardware, measure_spec
from wattcounts_pipeline.measure.store import load_sweep
from wattcounts_pipeline.meters.estimate import EstimateMeter

ROOT = REPO
TINY = ROOT / "models" / "tiny-llama"
LLAMA_70B = ROOT / "models" / "configs" / "llama-3.1-70b"


def _spec(quantization: str = "BF16", **engine_args: object) -> ExperimentSpec:
    return ExperimentSpec("t", ModelRef("tiny-llama", "config:models/tiny-llama", weights="random"), "transformers",
                          quantization, "bfloat16", Workload("w", input_tokens=8, output_tokens=6, num_requests=2),
                          engine_args=tuple(sorted({"device": "cpu", **engine_args}.items())), repetitions=2,
                          idle_s=0.1)


def test_balanced_map_splits_70b_layers_evenly_and_keeps_order() -> None:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(LLAMA_70B), dtype=torch.bfloat16)
    devices = [f"cuda:{i}" for i in range(4)]
    device_map = balanced_device_map(model, devices)
    layers = [device_map[f"model.layers.{i}"] for i in range(80)]
    assert [layers.count(d) for d in devices] == [20, 20, 20, 20]
    assert layers == sorted(layers)  # contiguous stages: activations cross each link once per token
    assert device_map["model.embed_tokens"] == "cuda:0" and device_map["lm_head"] == "cuda:3"
    assert set(device_map) >= {"model.norm", "model.rotary_emb"}


def test_pipeline_model_draws_random_weights_and_real_buffers() -> None:
    model = build_pipeline(TINY, torch.float32, ["cpu", "cpu"], random=True)
    assert not any(p.is_meta for p in model.parameters())
    rotary = model.model.rotary_emb
    expected = type(rotary)(config=rotary.config).inv_freq
    assert torch.equal(rotary.inv_freq, expected)  # computed, not left uninitialized
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert 0.015 < float(weight.detach().std()) < 0.025
    out = model.generate(input_ids=torch.tensor([[1, 2, 3]]), max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape == (1, 8)


def test_pipeline_spec_measures_through_measure_spec() -> None:
    result = measure_spec(_spec(parallelism="pipeline", gpus=2), EstimateMeter())
    runs = result.runs
    assert list(runs["parallelism"]) == ["pipeline", "pipeline"]
    args = json.loads(runs["engine_args_json"].iloc[0])
    assert args["gpus"] == 2 and args["parallelism"] == "pipeline"
    assert runs["output_tokens_total"].iloc[0] == 2 * 6
    assert runs["gpu_energy_j_by_gpu"].isna().all()  # the estimate meter has no GPU domains


def test_fp8_linear_is_close_to_bf16_and_replaces_linears() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32, bias=True).to(torch.bfloat16)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    fp8 = Fp8Linear(linear)
    assert fp8.weight.dtype == torch.float8_e4m3fn and fp8.weight_scale.shape == (1, 32)
    with torch.no_grad():
        ref, got = linear(x).float(), fp8(x).float()
    assert float((got - ref).norm() / ref.norm()) < 0.08
    q, scale = quantize_rowwise(torch.tensor([[0.0, 1.0, -448.0 * 2]]))
    assert float(scale) == pytest.approx(2.0) and float(q.float().abs().max()) == 448.0
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(TINY), dtype=torch.bfloat16)
    n = quantize_model_fp8(model)
    assert n > 0 and not isinstance(model.lm_head, Fp8Linear)
    assert isinstance(model.model.layers[0].mlp.down_proj, Fp8Linear)


def test_fp8_spec_records_its_linears() -> None:
    runs = measure_spec(_spec("FP8"), EstimateMeter()).runs
    args = json.loads(runs["engine_args_json"].iloc[0])
    assert runs["quantization"].iloc[0] == "FP8" and args["fp8_linears"] > 0


@pytest.mark.parametrize("engine_args", [{"gpus": 2}, {"parallelism": "pipeline"}, {"parallelism": "ring"}])
def test_inconsistent_parallelism_is_refused(engine_args: dict[str, object]) -> None:
    with pytest.raises(SpecError, match="parallelism"):
        _spec(**engine_args)


def test_hardware_pins_identity_and_is_checked(tmp_path: Path) -> None:
    base = _spec()
    pinned = ExperimentSpec.from_dict({**base.to_dict(), "hardware": "h200"})
    assert pinned.key != base.key and ExperimentSpec.from_dict(pinned.to_dict()).key == pinned.key
    check_hardware(pinned, {"gpu_name": "NVIDIA H200"})
    with pytest.raises(BackendError, match="'h200'.*NVIDIA H100 80GB HBM3"):
        check_hardware(pinned, {"gpu_name": "NVIDIA H100 80GB HBM3"})
    with pytest.raises(BackendError, match="no GPU"):
        measure_spec(pinned, EstimateMeter())


def test_per_gpu_energy_survives_validation_and_aggregation() -> None:
    """Recorded 4 × H200 rows (Llama-3.1-70B split over 4 GPUs) keep each GPU's energy."""
    folder = ROOT / "data" / "measurements" / "h200x4-2026-11-26-multi"
    tables = load_sweep(folder)
    runs = tables["runs"]
    result = validate_table("runs", runs, source=str(folder / "runs.jsonl"))
    assert result.ok, result.failures
    valid = result.valid
    per_gpu = valid["gpu_energy_j_by_gpu"].map(json.loads)
    assert (per_gpu.map(len) == valid["gpu_count"]).all() and (valid["gpu_count"] == 4).all()
    assert (per_gpu.map(sum) - valid["gpu_energy_j"]).abs().max() < 0.01
    configs = aggregate(valid, tables["requests"], pd.DataFrame())
    by_gpu = configs["energy_per_token_j_by_gpu"].map(json.loads)
    assert (by_gpu.map(sum) - configs["energy_per_token_j"]).abs().max() < 1e-3 * configs["energy_per_token_j"].max()
    assert set(configs["parallelism"]) == {"pipeline"}


def test_sharded_sweep_measures_each_spec_once(tmp_path: Path) -> None:
    doc = {"name": "shards", "defaults": {"repetitions": 2, "warmup_requests": 1, "idle_s": 0.1},
           "models": {"tiny": {"source": "config:models/tiny-llama", "weights": "random", "architecture": "llama"}},
           "workloads": {"w": {"kind": "fixed", "input_tokens": 8, "output_tokens": 4, "num_requests": 2}},
           "matrix": [{"model": "tiny", "framework": "transformers", "quantization": "F32", "dtype": "float32",
                       "engine_args": {"device": "cpu"}, "batch_sizes": [1, 2, 4]},
                      {"model": "tiny", "framework": "transformers", "quantization": "F32", "dtype": "float32",
                       "engine_args": {"device": "cpu", "parallelism": "pipeline", "gpus": 2}}]}
    experiment = tmp_path / "shards.yaml"
    experiment.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "wattcounts_pipeline.cli", "sweep", str(experiment), "--out", str(out),
                           "--shards", "2", "--meter", "estimate"], check=False, capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = load_sweep(out)["runs"]
    single = [s.key for s in load_experiment(experiment) if s.gpus == 1]
    assert sorted(runs["configuration_id"].unique()) == sorted(single)  # each once; the 2-GPU spec left out
    assert len(runs) == 2 * len(single)
    assert "[gpu0]" in proc.stderr and "[gpu1]" in proc.stderr and "multi-GPU specs left out" in proc.stderr


def test_prefill_split_separates_prefill_from_decode() -> None:
    spec = ExperimentSpec.from_dict({**_spec().to_dict(), "prefill_split": True, "min_window_s": 0.3})
    result = measure_spec(spec, EstimateMeter())
    runs = result.runs
    assert runs["prefill_energy_j"].notna().all() and (runs["prefill_energy_j"] > 0).all()
    assert (runs["prefill_energy_j"] < runs["energy_j"]).all()
    decoded = runs["output_tokens_total"] - runs["num_requests"]
    expected = (runs["energy_j"] - runs["prefill_energy_j"]) / decoded
    assert (runs["decode_energy_per_token_j"] - expected).abs().max() < 1e-9
    valid = validate_table("runs", runs, source="live").valid
    configs = aggregate(valid, result.requests, pd.DataFrame())
    assert configs["decode_energy_per_token_j"].iloc[0] == pytest.approx(runs["decode_energy_per_token_j"].mean())
    assert configs["prefill_energy_per_request_j"].iloc[0] == pytest.approx(
        (runs["prefill_energy_j"] / runs["num_requests"]).mean())
    assert spec.key != _spec().key


def test_sweep_hardware_pin_gives_new_ids_and_is_enforced(tmp_path: Path) -> None:
    """`--hardware h100` re-measures a file's specs under ids of their own; a host without that card
    refuses each one (recorded in failures.jsonl) instead of filing its rows under the wrong card."""
    from wattcounts_pipeline.cli import main

    doc = {"name": "pin", "defaults": {"repetitions": 1, "idle_s": 0.0},
           "models": {"tiny": {"source": "config:models/tiny-llama", "weights": "random", "architecture": "llama"}},
           "workloads": {"w": {"kind": "fixed", "input_tokens": 8, "output_tokens": 4, "num_requests": 1}},
           "matrix": [{"model": "tiny", "framework": "transformers", "quantization": "F32", "dtype": "float32",
                       "engine_args": {"device": "cpu"}}]}
    experiment = tmp_path / "pin.yaml"
    experiment.write_text(yaml.safe_dump(doc))
    (spec,) = load_experiment(experiment)
    # its only spec fails on this host: the sweep says so in its exit status
    assert main(["sweep", str(experiment), "--out", str(tmp_path / "out"), "--meter", "estimate", "--hardware", "H100"]) == 1
    failures = pd.read_json(tmp_path / "out" / "failures.jsonl", lines=True)
    (failed,) = failures["configuration_id"]
    assert failed != spec.key and failed.startswith(spec.key[:-8])
    assert "'h100'" in failures["error"].iloc[0]
