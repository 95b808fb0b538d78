"""Random GGUFs: the type plan is llama.cpp's own, and the files load and decode in llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

from wattcounts_pipeline.backends.gguf_random import (
    FILE_TYPES,
    Shape,
    decode_step_bytes,
    plan,
    random_gguf,
    tensor_bytes,
    write_random_gguf,
)
from wattcounts_pipeline.core.errors import BackendError

# Small shapes with rows a multiple of 256 (K-quant blocks) and 16 layers, so the layer rules (first 1/16,
# first/last 1/8, every third) all apply; GQA 4 for llama (attn_v rules differ at n_gqa >= 4).
SHAPES = {
    "llama": {"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 1},
    "qwen2": {"model_type": "qwen2", "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "phi3": {"model_type": "phi3", "num_attention_heads": 4, "num_key_value_heads": 4},
    "gemma2": {"model_type": "gemma2", "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
               "query_pre_attn_scalar": 64, "sliding_window": 128},
    # Mixtral's rules key on exactly 8 experts; Mistral-Small-24B's heads are narrower than hidden / heads
    "mixtral": {"model_type": "mixtral", "num_attention_heads": 4, "num_key_value_heads": 1, "num_local_experts": 8,
                "num_experts_per_tok": 2},
    "mistral-narrow-heads": {"model_type": "mistral", "num_attention_heads": 2, "num_key_value_heads": 1,
                             "head_dim": 64},
    # 80 layers with grouped KV heads is llama.cpp's "70B" type: a wider attn_v in K-quant files
    "llama-70b-type": {"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 1,
                       "num_hidden_layers": 80},
}
ALL_TYPES = sorted(set(FILE_TYPES) - {"F16"})


def _config(tmp_path: Path, arch: str) -> Path:
    folder = tmp_path / arch
    folder.mkdir()
    cfg = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 16, "vocab_size": 512,
           "max_position_embeddings": 512, "rms_norm_eps": 1e-5, **SHAPES[arch]}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _quantize(source: Path, quantization: str, out: Path) -> dict[str, str]:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quantization}")
    assert llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) == 0
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors}


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_plan_matches_llama_cpp_quantizer(tmp_path: Path, arch: str) -> None:
    config = _config(tmp_path, arch)
    f16 = write_random_gguf(config, "F16", tmp_path / f"{arch}-F16.gguf")
    shape = Shape.from_config(config)
    for quantization in ALL_TYPES if arch in ("llama", "mixtral") else ["Q4_K_M", "Q3_K_M", "Q2_K"]:
        reference = _quantize(f16, quantization, tmp_path / f"{arch}-{quantization}-ref.gguf")
        planned = {t.name: t.type for t in plan(shape, quantization)}
        assert planned == reference, quantization


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_planned_bytes_are_the_bytes_written(tmp_path: Path, arch: str) -> None:
    # The roofline's numerator comes from the plan: it must be the tensor data the file holds.
    config = _config(tmp_path, arch)
    shape = Shape.from_config(config)
    for quantization in ("F16", "Q8_0", "Q4_K_M", "Q2_K"):
        path = write_random_gguf(config, quantization, tmp_path / f"{quantization}.gguf")
        written = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors}
        planned = {t.name: tensor_bytes(t) for t in plan(shape, quantization)}
        assert planned == written, quantization
        embd = written["token_embd.weight"]
        gathered = embd if shape.tied else embd // shape.n_vocab
        experts = sum(n for name, n in written.items() if "_exps." in name)  # a token reads its routed experts only
        routed = experts * shape.n_expert_used // shape.n_expert if shape.n_expert else 0
        assert decode_step_bytes(shape, quantization) == sum(written.values()) - embd + gathered - experts + routed


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_direct_file_loads_and_decodes(tmp_path: Path, arch: str) -> None:
    path = write_random_gguf(_config(tmp_path, arch), "Q4_K_M", tmp_path / "m.gguf")
    written = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert written == {t.name: t.type for t in plan(Shape.from_config(tmp_path / arch), "Q4_K_M")}
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, verbose=False)
    try:
        assert llm.n_vocab() == 512
        tokens = llm.tokenize(b"random weights, small finite values", add_bos=True)
        out = []
        for token in llm.generate(tokens, top_k=1, temp=0.0):
            out.append(token)
            if len(out) == 4:
                break
        assert all(0 <= t < 512 for t in out)
    finally:
        llm.close()


@pytest.mark.parametrize("quantization", sorted(FILE_TYPES))
def test_every_weight_is_finite_and_small(tmp_path: Path, quantization: str) -> None:
    from gguf.quants import dequantize

    path = write_random_gguf(_config(tmp_path, "llama"), quantization, tmp_path / "m.gguf")
    for tensor in gguf.GGUFReader(str(path)).tensors:
        values = dequantize(tensor.data, tensor.tensor_type)
        assert np.isfinite(values).all(), tensor.name
        assert np.abs(values).max() <= 1.0, tensor.name  # norms are 1; matrices stay far below (scales of 2^-12)


def test_cache_reuses_and_bounds(tmp_path: Path) -> None:
    config = _config(tmp_path, "llama")
    cache = tmp_path / "cache"
    first = random_gguf(config, "Q8_0", cache)
    assert random_gguf(config, "q8_0", cache) == first  # spelled either way, written once
    second = random_gguf(config, "Q4_0", cache, keep=1)
    assert sorted(p.name for p in cache.glob("*.gguf")) == [second.name]


def test_unknown_architecture_and_type_are_errors(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(BackendError, match="model_type 'mamba'.*known"):
        Shape.from_config(folder)
    with pytest.raises(BackendError, match="Q1_Z"):
        plan(Shape.from_config(_config(tmp_path, "llama")), "Q1_Z")
