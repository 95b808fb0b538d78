from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from wattcounts_pipeline.model.catalog import architecture_catalog, get_hardware
from wattcounts_pipeline.model.errors import CatalogError, ModelError
from wattcounts_pipeline.model.features import (
    PHYSICS_FEATURES,
    build_features,
    bytes_per_weight,
    engine_mode,
    featurize,
    quantization_key,
    roofline,
    run_work,
    weights_read_per_step,
)
from wattcounts_pipeline.model.physics import prefill_setup_labels


def test_roofline_memory_bound_by_hand() -> None:
    """Llama-3.1-8B in BF16 on one H100 SXM, batch 1, 128 in / 256 out: memory-bound decode."""
    weight_b = 8_030_261_248 * 2
    kv_b = 2 * 32 * 8 * 128 * 2 * (128 + 256 / 2)  # K and V, 32 layers, 8 KV heads of 128, 2 bytes, mean context
    memory_s = (weight_b + kv_b) / 3350e9
    rl = roofline(architecture_catalog()["Llama-3.1-8B"], get_hardware("H100-SXM"), quant="BF16",
                  batch_size=1, input_tokens=128, output_tokens=256)
    assert rl.weight_bytes == weight_b and rl.kv_bytes_per_step == kv_b
    assert rl.compute_s == pytest.approx(2 * 8_030_261_248 / 989.4e12)
    assert rl.step_s == pytest.approx(memory_s) == pytest.approx(4.8042e-3, rel=1e-4)
    assert rl.tokens_per_s == pytest.approx(208.15, rel=1e-4)  # DESIGN.md: "≈ 210 on an H100"
    assert rl.energy_j_per_token == pytest.approx(700 * memory_s) == pytest.approx(3.3629, rel=1e-4)


def test_roofline_compute_bound_by_hand() -> None:
    """Llama-3.2-1B BF16 at batch 1024 with a tiny context: FLOPs, not bytes, set the step."""
    params = architecture_catalog()["Llama-3.2-1B"].total_params
    rl = roofline(architecture_catalog()["Llama-3.2-1B"], get_hardware("H100-SXM"), quant="BF16",
                  batch_size=1024, input_tokens=0, output_tokens=1)
    compute_s = 2 * params * 1024 / 989.4e12
    assert rl.step_s == pytest.approx(compute_s) and rl.memory_s < compute_s
    assert rl.s_per_token == pytest.approx(compute_s / 1024)
    assert rl.energy_j_per_token == pytest.approx(700 * compute_s / 1024)


def test_fp8_uses_fp8_peak_and_two_gpus_double_the_roofline() -> None:
    arch, h100 = architecture_catalog()["Llama-3.1-70B"], get_hardware("H100-SXM")
    one = roofline(arch, h100, quant="BF16", batch_size=512, input_tokens=0, output_tokens=1)
    fp8 = roofline(arch, h100, quant="FP8", batch_size=512, input_tokens=0, output_tokens=1)
    two = roofline(arch, h100, quant="BF16", batch_size=512, input_tokens=0, output_tokens=1, device_count=2)
    assert fp8.compute_s == pytest.approx(one.compute_s * 989.4 / 1978.9)  # datasheet FP8 rate vs BF16 rate
    assert two.step_s == pytest.approx(one.step_s / 2)
    assert two.energy_j_per_token == pytest.approx(one.energy_j_per_token)  # twice the power for half the time


def test_mixture_of_experts_reads_only_routed_experts() -> None:
    mixtral = architecture_catalog()["Mixtral-8x7B"]
    assert weights_read_per_step(mixtral, 1) == pytest.approx(mixtral.active_params)
    assert weights_read_per_step(mixtral, 256) == pytest.approx(mixtral.total_params)


def test_transformers_decode_copies_routed_experts_per_token() -> None:
    """batched_mm: three passes over each routed expert per (token, expert) pair, so the bytes grow with the batch
    where a fused kernel's stop at all experts; prefill and dense models are unchanged."""
    mixtral, h200 = architecture_catalog()["Mixtral-8x7B"], get_hardware("H200")
    routed = mixtral.experts_per_token * mixtral.num_layers * mixtral.mlp_params_per_expert * 2  # bytes, BF16

    def work(arch_key: str, batch: int, gathers: bool) -> dict[str, float]:
        return run_work(architecture_catalog()[arch_key], h200, quant="BF16", batch_size=batch, input_tokens=0,
                        output_tokens=1, gathers_experts=gathers)

    step = {b: work("Mixtral-8x7B", b, True)["decode_memory_s"] * 4800e9 for b in (1, 8, 32)}
    assert step[32] - step[8] == pytest.approx(3 * 24 * routed, rel=1e-4)  # + a little KV cache
    assert work("Mixtral-8x7B", 32, False)["decode_memory_s"] < work("Mixtral-8x7B", 8, True)["decode_memory_s"]
    assert work("Mixtral-8x7B", 8, True)["prefill_memory_s"] == work("Mixtral-8x7B", 8, False)["prefill_memory_s"]
    assert work("Llama-3.1-8B", 8, True) == work("Llama-3.1-8B", 8, False)


def test_a_pipeline_runs_its_stages_in_turn_and_tensor_parallel_splits_the_work() -> None:
    rows = pd.DataFrame([{"model": "llama-3.1-70b", "framework": "transformers", "dtype": "bfloat16",
                          "hardware": "H200", "gpu_count": 4, "batch_size": 1, "input_tokens": 128,
                          "output_tokens": 256, "engine_args_json": json.dumps(args)}
                         for args in ({"parallelism": "pipeline"}, {"parallelism": "tensor"}, {})])
    pipe, tensor, default = build_features(rows).to_dict("records")
    assert pipe["parallelism"] == default["parallelism"] == "pipeline" and tensor["parallelism"] == "tensor"
    assert pipe["decode_memory_s"] == pytest.approx(4 * tensor["decode_memory_s"])
    assert pipe["tdp_w"] == tensor["tdp_w"] == 4 * 700 and pipe["working_tdp_w"] == 700
    # the same joules of work either way: a quarter of the devices for four times as long
    assert pipe["working_tdp_w"] * pipe["decode_memory_s"] == pytest.approx(
        tensor["working_tdp_w"] * tensor["decode_memory_s"])


def test_a_compiled_transformers_run_prefills_on_the_eager_path() -> None:
    feats = pd.DataFrame({"framework": ["transformers", "transformers", "llamacpp-server"],
                          "mode": ["compiled", "compiled", "eager"], "quant_key": ["BF16", "FP8", "Q4_K_M"]})
    assert list(prefill_setup_labels(feats)) == ["transformers/eager", "transformers/eager/FP8",
                                                 "llamacpp-server/eager"]


@pytest.mark.parametrize(("quant", "dtype", "expected"), [
    ("F32", "float32", 4.0), ("BF16", "", 2.0), ("f16", "", 2.0), ("FP8", "", 1.0625), ("Q8_0", "", 1.0625),
    ("Q6_K", "", 0.82), ("Q5_K_M", "", 0.71), ("Q4_K_M", "", 0.60), ("q4-0", "", 0.5625), ("Q3_K_M", "", 0.49),
    ("Q2_K", "", 0.41), ("none", "bfloat16", 2.0), ("", "float32", 4.0),
    ("torchao-fp8-row", "bfloat16", 1.0), ("torchao-int4-wo", "bfloat16", 0.53), ("bnb-nf4", "bfloat16", 0.5625),
])
def test_bytes_per_weight(quant: str, dtype: str, expected: float) -> None:
    assert bytes_per_weight(quant, dtype) == expected


def test_every_format_the_transformers_backend_applies_is_known_to_the_predictor() -> None:
    from wattcounts_pipeline.backends.quantizers import BNB_FORMATS, TORCHAO_FORMATS

    for quantization in [*TORCHAO_FORMATS, *BNB_FORMATS]:
        assert 0.5 <= bytes_per_weight(quantization, "bfloat16") <= 1.0, quantization


def test_unknown_quantization_lists_known() -> None:
    with pytest.raises(ModelError, match=r"unknown quantization 'IQ1_S'.*Q4_K_M"):
        quantization_key("IQ1_S")


@pytest.mark.parametrize(("framework", "args", "mode"), [
    ("transformers", {}, "eager"), ("transformers", {"compile": True}, "compiled"),
    ("transformers", {"cache_implementation": "static"}, "compiled"), ("vllm", {}, "compiled"),
    ("vllm", {"enforce_eager": True}, "eager"), ("llamacpp", {"n_ctx": 1024}, "eager"),
])
def test_engine_mode(framework: str, args: dict[str, object], mode: str) -> None:
    assert engine_mode(framework, json.dumps(args)) == mode


def test_bad_engine_args_json_raises() -> None:
    with pytest.raises(ModelError, match="not JSON"):
        engine_mode("vllm", "{oops")


def _rows() -> pd.DataFrame:
    return pd.DataFrame([
        {"model": "meta-llama/Llama-3.1-8B-Instruct", "architecture": "llama", "quantization": "BF16",
         "dtype": "bfloat16", "framework": "vllm", "engine_args_json": "{}", "batch_size": 8, "input_tokens": 512.0,
         "output_tokens": 256.0, "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "cpu_model": "Xeon"},
        {"model": "gemma3-270m", "architecture": "gemma3", "quantization": "Q4_K_M", "dtype": "auto",
         "framework": "llamacpp", "engine_args_json": "{}", "batch_size": 1, "input_tokens": 64.0,
         "output_tokens": 32.0, "gpu_name": None, "gpu_count": 0, "cpu_model": "Intel(R) Xeon(R) Processor"},
    ], index=["a", "b"]).astype({"gpu_name": "string", "model": "string"})  # nulls as pandas' NA, as conformed


def test_build_features_from_configuration_rows() -> None:
    feats = build_features(_rows())
    assert list(feats.index) == ["a", "b"]
    assert feats.loc["a", "hardware_key"] == "H100-SXM" and feats.loc["b", "hardware_key"] == "cpu-x86-server"
    assert feats.loc["a", "mode"] == "compiled" and feats.loc["b", "gpu_count"] == 0
    assert feats.loc["b", "bytes_per_weight"] == 0.60
    assert not feats[PHYSICS_FEATURES].isna().any().any()
    tokens_per_s = feats.loc["a", "roofline_tokens_per_s"]
    assert feats.loc["a", "log_roofline_tokens_per_s"] == pytest.approx(math.log(tokens_per_s))
    assert feats.loc["a", "memory_available_gb"] == 80 and math.isnan(feats.loc["b", "memory_available_gb"])


def test_unknown_rows_raise_or_are_skipped_with_a_reason() -> None:
    rows = pd.concat([_rows(), _rows().iloc[[0]].assign(model="gpt2").rename(index={"a": "c"})])
    with pytest.raises(CatalogError, match=r"row 'c'.*unknown architecture"):
        build_features(rows)
    feats, skipped = featurize(rows, skip_unknown=True)
    assert list(feats.index) == ["a", "b"] and list(skipped) == ["c"] and "gpt2" in skipped["c"]
