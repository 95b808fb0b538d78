from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO
from wattcounts_pipeline.model.catalog import (
    architecture_catalog,
    get_architecture,
    get_hardware,
    hardware_catalog,
    hardware_for_row,
)
from wattcounts_pipeline.model.errors import CatalogError

# Parameter counts published on the models' cards (billions); the catalog computes them from config.json shapes.
PUBLISHED_PARAMS_B = {
    "Llama-3.1-8B": 8.03, "Llama-3.2-1B": 1.24, "Llama-3.2-3B": 3.21, "Llama-3.1-70B": 70.6,
    "Qwen2.5-0.5B": 0.49, "Qwen2.5-1.5B": 1.54, "Qwen2.5-7B": 7.61, "Qwen2.5-14B": 14.7, "Qwen2.5-32B": 32.5, "Mistral-7B": 7.25, "Mistral-Small-24B": 23.6,
    "Phi-3-mini": 3.82, "Gemma-2-2B": 2.61, "Gemma-3-270M": 0.268, "Mixtral-8x7B": 46.7, "OLMoE-1B-7B": 6.92,
}


@pytest.mark.parametrize(("key", "billions"), sorted(PUBLISHED_PARAMS_B.items()))
def test_parameter_counts_match_published(key: str, billions: float) -> None:
    assert architecture_catalog()[key].total_params / 1e9 == pytest.approx(billions, rel=0.015)


def test_mixture_of_experts_active_params() -> None:
    mixtral = architecture_catalog()["Mixtral-8x7B"]
    assert mixtral.active_params / 1e9 == pytest.approx(12.9, rel=0.01)
    assert architecture_catalog()["OLMoE-1B-7B"].active_params / 1e9 == pytest.approx(1.28, rel=0.01)  # its card
    assert architecture_catalog()["Llama-3.1-8B"].active_params == architecture_catalog()["Llama-3.1-8B"].total_params


def test_tiny_llama_matches_the_repository_config() -> None:
    tiny = architecture_catalog()["tiny-llama"]
    # 512x64 tied embedding + 2 x (12,288 attention + 24,576 MLP + 128 norms) + 64 final norm
    assert tiny.total_params == 106_816


def test_every_entry_cites_a_source_and_is_positive() -> None:
    for hw in hardware_catalog().values():
        assert hw.source and hw.memory_bandwidth_gb_s > 0 and hw.peak_bf16_tflops > 0 and hw.tdp_w > 0
        assert hw.peak_fp8_tflops is None or hw.peak_fp8_tflops >= hw.peak_bf16_tflops
        assert hw.kind in ("gpu", "cpu")
    for arch in architecture_catalog().values():
        assert arch.source and arch.num_heads % arch.num_kv_heads == 0


@pytest.mark.parametrize(("name", "key"), [
    ("NVIDIA H100 80GB HBM3", "H100-SXM"), ("H100-SXM", "H100-SXM"), ("h100 sxm", "H100-SXM"),
    ("NVIDIA H100 PCIe", "H100-PCIe"), ("NVIDIA H200", "H200"), ("NVIDIA H200 NVL", "H200-NVL"),
    ("NVIDIA A100-SXM4-40GB", "A100-40GB"), ("NVIDIA A100 80GB PCIe", "A100-80GB-PCIe"),
    ("NVIDIA L40S", "L40S"), ("NVIDIA L4", "L4"), ("NVIDIA A10G", "A10G"), ("NVIDIA GeForce RTX 4090", "RTX-4090"),
])
def test_hardware_lookup(name: str, key: str) -> None:
    assert get_hardware(name).key == key


def test_datasheet_values_for_h100_sxm() -> None:
    h100 = get_hardware("H100-SXM")
    assert (h100.memory_gb, h100.memory_bandwidth_gb_s, h100.peak_bf16_tflops, h100.tdp_w) == (80, 3350, 989.4, 700)


def test_rows_map_to_gpu_or_cpu_entries() -> None:
    assert hardware_for_row("NVIDIA L4", 1, "AMD EPYC 7R13").key == "L4"
    assert hardware_for_row(None, 0, "Intel(R) Xeon(R) Processor").key == "cpu-x86-server"
    assert hardware_for_row(None, 0, "AMD EPYC 9654 96-Core Processor").key == "cpu-x86-server"
    assert hardware_for_row(None, 0, "Apple M3 Max").key == "cpu-generic"


def test_unknown_hardware_lists_known() -> None:
    with pytest.raises(CatalogError, match=r"unknown hardware 'TPU v5e'.*H100-SXM.*L4"):
        get_hardware("TPU v5e")
    with pytest.raises(CatalogError, match="B200"):
        hardware_for_row("NVIDIA B200", 1, "Xeon")


@pytest.mark.parametrize(("model", "key"), [
    ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B"), ("Meta-Llama-3-8B-Instruct", "Llama-3.1-8B"),
    ("Llama-3.2-1B", "Llama-3.2-1B"), ("unsloth/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B"),
    ("gemma3-270m", "Gemma-3-270M"), ("gemma-3-270m-it-Q4_K_M.gguf", "Gemma-3-270M"),
    ("tiny-llama", "tiny-llama"), ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5-0.5B"),
    ("Qwen/Qwen2.5-14B-Instruct", "Qwen2.5-14B"), ("mistralai/Mistral-7B-Instruct-v0.3", "Mistral-7B"),
    ("microsoft/Phi-3-mini-4k-instruct", "Phi-3-mini"), ("mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B"),
])
def test_model_names_map_to_architectures(model: str, key: str) -> None:
    assert get_architecture(model).key == key


def test_architecture_field_is_the_fallback() -> None:
    assert get_architecture("my-finetune", "Qwen2.5-7B").key == "Qwen2.5-7B"


def test_similar_names_are_not_confused() -> None:
    with pytest.raises(CatalogError, match="unknown architecture"):
        get_architecture("meta-llama/Llama-3.2-11B-Vision")  # not Llama-3.2-1B
    assert get_architecture("Qwen2.5-1.5B").key == "Qwen2.5-1.5B"


def test_unknown_architecture_lists_known() -> None:
    with pytest.raises(CatalogError, match=r"unknown architecture for model 'gpt2'.*Llama-3.1-8B.*tiny-llama"):
        get_architecture("gpt2", "gpt2")


MODELS_DIR = REPO / "models"
CONFIGS = sorted([*MODELS_DIR.glob("configs/*/config.json"), *MODELS_DIR.glob("tiny-llama/config.json")])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.parent.name for p in CONFIGS])
def test_catalog_agrees_with_the_repository_configs(path: Path) -> None:
    """models/configs/ (random-weight runs) and the catalog both copy public config.json values: they must agree."""
    config = json.loads(path.read_text())
    arch = get_architecture(path.parent.name)
    assert (arch.hidden_size, arch.num_layers, arch.num_heads, arch.num_kv_heads, arch.intermediate_size,
            arch.vocab_size, arch.tie_word_embeddings, arch.num_experts) == (
        config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
        config["num_key_value_heads"], config["intermediate_size"], config["vocab_size"],
        config.get("tie_word_embeddings", False), config.get("num_local_experts", config.get("num_experts", 1)))
    assert arch.head_dim == config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.parent.name for p in CONFIGS])
def test_catalog_counts_the_parameters_transformers_builds(path: Path) -> None:
    """The catalog's count (the predictor's bytes per step) is what transformers instantiates from the config, to
    0.01% (the catalog counts two norms a layer; Gemma-2 has four, 120k parameters of its 2.6B)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path.parent))
    model.tie_weights()  # on the meta device the input and output embeddings are tied only when asked
    built = sum(p.numel() for p in model.parameters())
    assert built == pytest.approx(get_architecture(path.parent.name).total_params, rel=1e-4)
