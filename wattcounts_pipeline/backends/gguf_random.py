"""Random-weight GGUF files of public architectures, written directly in a llama.cpp quantization type.

Speed and energy of llama.cpp depend on the tensor types and shapes, not on the values, so a random model
can be measured without its weights. Quantizing a full-size F16 file with `llama-quantize` costs minutes
per type on a GPU host; here every tensor is written in its final type at disk speed: random bytes for
the quants, a small finite scale in every block's f16 scale fields (no NaN or inf anywhere).

Which type each tensor gets follows llama.cpp's own mixture rules (`llama_tensor_get_type_impl` in
`src/llama-quant.cpp` of the llama.cpp vendored in llama-cpp-python 0.3.36), for the types the sweep
measures and the architectures in `models/configs/`: `tests/unit/test_gguf_random.py` checks the plan
against llama.cpp's quantizer on small shapes. The file records `general.file_type`, so it reads as the
type users download (e.g. a Q4_K_M file with its Q6_K output and attn_v/ffn_down layers).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wattcounts_pipeline.core.atomic import atomic_file
from wattcounts_pipeline.core.errors import BackendError

logger = logging.getLogger(__name__)

# quantization (as rows name it) -> (llama.cpp file type, default tensor type)
FILE_TYPES: dict[str, tuple[str, str]] = {
    "F16": ("MOSTLY_F16", "F16"), "Q8_0": ("MOSTLY_Q8_0", "Q8_0"), "Q6_K": ("MOSTLY_Q6_K", "Q6_K"),
    "Q5_K_M": ("MOSTLY_Q5_K_M", "Q5_K"), "Q4_K_M": ("MOSTLY_Q4_K_M", "Q4_K"), "Q4_0": ("MOSTLY_Q4_0", "Q4_0"),
    "Q3_K_M": ("MOSTLY_Q3_K_M", "Q3_K"), "Q2_K": ("MOSTLY_Q2_K", "Q2_K"), "IQ4_XS": ("MOSTLY_IQ4_XS", "IQ4_XS"),
}
# byte offsets of the f16 scale fields (d, dmin) inside one block of each type (ggml-common.h)
SCALE_OFFSETS: dict[str, tuple[int, ...]] = {
    "Q4_0": (0,), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "IQ4_NL": (0,), "IQ4_XS": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}
# llama.cpp's fallback when a tensor's row length is not a multiple of the type's block (tensor_type_fallback)
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL"}
SCALE_F16 = np.float16(2.0 ** -12)  # |weight| stays below ~0.25 for every type: finite activations
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "phi3": "phi3",
             "gemma2": "gemma2"}
POOL_BYTES = 1 << 26  # one random pool, tiled: values need not be unique, only finite


@dataclass(frozen=True)
class Tensor:
    """One tensor of the file: GGUF name, numpy-order shape (rows, columns) and ggml type name."""

    name: str
    shape: tuple[int, ...]
    type: str


@dataclass(frozen=True)
class Shape:
    """The hyperparameters of an HF config.json that the GGUF needs."""

    arch: str
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx: int
    rms_eps: float
    rope_theta: float
    tied: bool
    config: dict[str, Any]
    n_expert: int = 0  # a mixture of experts (Mixtral): experts per layer, and how many each token uses
    n_expert_used: int = 0

    @classmethod
    def from_config(cls, path: Path) -> Shape:
        cfg = json.loads((path / "config.json").read_text())
        model_type = cfg.get("model_type", "")
        if model_type not in GGUF_ARCH:
            raise BackendError(f"{path / 'config.json'}: model_type {model_type!r} has no random-GGUF writer; "
                               f"known: {sorted(GGUF_ARCH)}")
        n_head = int(cfg["num_attention_heads"])
        return cls(arch=GGUF_ARCH[model_type], n_embd=int(cfg["hidden_size"]), n_ff=int(cfg["intermediate_size"]),
                   n_layer=int(cfg["num_hidden_layers"]), n_head=n_head,
                   n_head_kv=int(cfg.get("num_key_value_heads") or n_head),
                   head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // n_head),
                   n_vocab=int(cfg["vocab_size"]), n_ctx=int(cfg.get("max_position_embeddings", 4096)),
                   rms_eps=float(cfg.get("rms_norm_eps", 1e-5)), rope_theta=float(cfg.get("rope_theta", 10000.0)),
                   tied=bool(cfg.get("tie_word_embeddings", model_type == "gemma2")), config=cfg,
                   n_expert=int(cfg.get("num_local_experts") or 0),
                   n_expert_used=int(cfg.get("num_experts_per_tok") or 0))

    @property
    def is_70b(self) -> bool:
        """llama.cpp's LLM_TYPE_70B, which gets a wider attn_v when quantized: 80 layers of qwen2, or of llama
        with grouped KV heads (80 layers without are its 65B)."""
        return self.n_layer == 80 and (self.arch == "qwen2" or (self.arch == "llama" and self.n_head != self.n_head_kv))


def tensors(shape: Shape) -> list[Tensor]:
    """Every tensor llama.cpp loads for this architecture, in F32 (norms, biases) or F16 (matrices)."""
    d, ff, hd = shape.n_embd, shape.n_ff, shape.head_dim
    q, kv = shape.n_head * hd, shape.n_head_kv * hd
    out = [Tensor("token_embd.weight", (shape.n_vocab, d), "F16")]
    for i in range(shape.n_layer):
        b = f"blk.{i}."
        out.append(Tensor(b + "attn_norm.weight", (d,), "F32"))
        if shape.arch == "phi3":
            out += [Tensor(b + "attn_qkv.weight", (q + 2 * kv, d), "F16")]
        else:
            out += [Tensor(b + "attn_q.weight", (q, d), "F16"), Tensor(b + "attn_k.weight", (kv, d), "F16"),
                    Tensor(b + "attn_v.weight", (kv, d), "F16")]
            if shape.arch == "qwen2":
                out += [Tensor(b + "attn_q.bias", (q,), "F32"), Tensor(b + "attn_k.bias", (kv,), "F32"),
                        Tensor(b + "attn_v.bias", (kv,), "F32")]
        out.append(Tensor(b + "attn_output.weight", (d, q), "F16"))
        if shape.arch == "gemma2":
            out.append(Tensor(b + "post_attention_norm.weight", (d,), "F32"))
        out.append(Tensor(b + "ffn_norm.weight", (d,), "F32"))
        if shape.n_expert:  # the router (never quantized) and the experts, one 3-D tensor per projection
            e = shape.n_expert
            out += [Tensor(b + "ffn_gate_inp.weight", (e, d), "F32"), Tensor(b + "ffn_gate_exps.weight", (e, ff, d), "F16"),
                    Tensor(b + "ffn_down_exps.weight", (e, d, ff), "F16"), Tensor(b + "ffn_up_exps.weight", (e, ff, d), "F16")]
            continue
        if shape.arch == "phi3":
            out.append(Tensor(b + "ffn_up.weight", (2 * ff, d), "F16"))
        else:
            out += [Tensor(b + "ffn_gate.weight", (ff, d), "F16"), Tensor(b + "ffn_up.weight", (ff, d), "F16")]
        out.append(Tensor(b + "ffn_down.weight", (d, ff), "F16"))
        if shape.arch == "gemma2":
            out.append(Tensor(b + "post_ffw_norm.weight", (d,), "F32"))
    out.append(Tensor("output_norm.weight", (d,), "F32"))
    if not shape.tied:
        out.append(Tensor("output.weight", (shape.n_vocab, d), "F16"))
    return out


def _block_size(type_name: str) -> int:
    import gguf

    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]][0]


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def plan(shape: Shape, quantization: str) -> list[Tensor]:
    """The tensors with the types llama.cpp's quantizer gives them for `quantization` (no imatrix)."""
    if quantization not in FILE_TYPES:
        raise BackendError(f"no random GGUF for quantization {quantization!r}; known: {sorted(FILE_TYPES)}")
    ftype, default = FILE_TYPES[quantization]
    base = tensors(shape)
    if ftype == "MOSTLY_F16":
        return base
    gqa = shape.n_head // shape.n_head_kv
    has_output = any(t.name == "output.weight" for t in base)
    n_v = sum(1 for t in base if t.name.endswith(("attn_v.weight", "attn_qkv.weight")))
    i_v = i_down = 0
    out = []
    for t in base:
        name, new = t.name, default
        if len(t.shape) < 2 or not name.endswith("weight") or "_norm.weight" in name or "ffn_gate_inp" in name:
            out.append(t)
            continue
        if name == "output.weight" or (name == "token_embd.weight" and not has_output):
            new = "Q8_0" if t.shape[-1] % _block_size(default) else ("Q6_K" if default != "Q8_0" else "Q8_0")
        elif name == "token_embd.weight":
            pass
        elif name.endswith(("attn_v.weight", "attn_qkv.weight")):
            if ftype == "MOSTLY_Q2_K":
                new = "Q4_K" if gqa >= 4 else "Q3_K"
            elif ftype == "MOSTLY_Q3_K_M":
                new = "Q5_K" if i_v < 2 else "Q4_K"
            elif ftype == "MOSTLY_IQ4_XS" and gqa >= 4:
                new = "Q5_K"
            elif ftype in ("MOSTLY_Q4_K_M", "MOSTLY_Q5_K_M") and _more_bits(i_v, n_v):
                new = "Q6_K"
            if shape.is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            if shape.n_expert == 8:
                new = "Q8_0"
            i_v += 1  # a fused attn_qkv takes the attn_v rules (llama.cpp's own attn_qkv branch is never reached)
        elif name.endswith("attn_k.weight") and shape.n_expert == 8:
            new = "Q8_0"
        elif name.endswith(("ffn_down.weight", "ffn_down_exps.weight")):
            n = shape.n_layer
            if ftype == "MOSTLY_Q2_K":
                new = "Q3_K"
            elif ftype == "MOSTLY_Q3_K_M":
                new = "Q5_K" if i_down < n // 16 else "Q4_K"
            elif ftype in ("MOSTLY_Q4_K_M", "MOSTLY_Q5_K_M") and _more_bits(i_down, n):
                new = "Q6_K"
            elif ftype == "MOSTLY_IQ4_XS" and i_down < n // 8:
                new = "Q5_K"
            i_down += 1
        elif name.endswith("attn_output.weight") and shape.n_expert == 8:
            new = "Q5_K" if ftype in ("MOSTLY_Q2_K", "MOSTLY_Q3_K_M", "MOSTLY_Q4_K_M", "MOSTLY_IQ4_XS") else new
        elif name.endswith("attn_output.weight"):
            new = {"MOSTLY_Q2_K": "Q3_K", "MOSTLY_Q3_K_M": "Q4_K"}.get(ftype, new)
        if new in FALLBACK and t.shape[-1] % _block_size(new):
            new = FALLBACK[new]
        if t.shape[-1] % _block_size(new):
            new = "F16"
        out.append(Tensor(name, t.shape, new))
    return out


def tensor_bytes(t: Tensor) -> int:
    """Bytes of `t` in the file: whole blocks of its type along the row."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t.type]]
    rows = int(np.prod(t.shape[:-1], dtype=np.int64)) if len(t.shape) > 1 else 1
    return rows * (t.shape[-1] // block) * size


def decode_step_bytes(shape: Shape, quantization: str) -> int:
    """Weight bytes one batch-1 decode step reads: every tensor, but of an untied input-embedding table only the
    row it gathers (a tied table is the output projection too, read whole) and of each layer's experts only the
    ones the token is routed to: the numerator of the memory roofline."""
    total = 0
    for t in plan(shape, quantization):
        b = tensor_bytes(t)
        if t.name == "token_embd.weight" and not shape.tied:
            b //= t.shape[0]
        elif "_exps." in t.name:
            b = b * shape.n_expert_used // shape.n_expert
        total += b
    return total


def _pool(type_name: str, rng: np.random.Generator) -> np.ndarray:
    """A buffer of whole blocks of `type_name` (bytes), every scale field set to SCALE_F16."""
    import gguf

    if type_name == "F16":
        return (rng.standard_normal(POOL_BYTES // 2, dtype=np.float32) * 0.02).astype(np.float16).view(np.uint8)
    _, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    blocks = rng.integers(0, 256, size=(POOL_BYTES // type_size, type_size), dtype=np.uint8)
    scale = np.frombuffer(SCALE_F16.tobytes(), dtype=np.uint8)
    for offset in SCALE_OFFSETS[type_name]:
        blocks[:, offset: offset + 2] = scale
    return blocks.reshape(-1)


def _data(t: Tensor, pools: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The bytes of one tensor: ones for norms, zeros for biases, a random router (so that tokens spread over
    the experts as in a trained model, not all to the same two), tiled random blocks for matrices."""
    import gguf

    if "ffn_gate_inp" in t.name:
        return rng.standard_normal(t.shape, dtype=np.float32)
    if t.type == "F32":
        return np.ones(t.shape, np.float32) if t.name.endswith("weight") else np.zeros(t.shape, np.float32)
    if t.type not in pools:
        pools[t.type] = _pool(t.type, rng)
    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t.type]]
    rows = int(np.prod(t.shape[:-1], dtype=np.int64))
    return np.resize(pools[t.type], rows * (t.shape[-1] // block) * type_size).reshape(*t.shape[:-1], -1)


def _vocab(n_vocab: int) -> Iterator[tuple[bytes, float, int]]:
    """A SentencePiece-style placeholder vocabulary: <unk>, <s>, </s>, the 256 byte tokens, <|endoftext|>
    (llama.cpp looks it up by name in models named Phi-3), then fillers."""
    yield b"<unk>", 0.0, 2
    yield b"<s>", 0.0, 3
    yield b"</s>", 0.0, 3
    for b in range(256):
        yield f"<0x{b:02X}>".encode(), 0.0, 6
    yield b"<|endoftext|>", 0.0, 3
    for i in range(n_vocab - 260):
        yield f"\u2581t{i}".encode(), -float(i), 1


def _metadata(writer: Any, shape: Shape, quantization: str) -> None:
    import gguf

    writer.add_name(f"random {shape.config.get('_source_model', shape.arch)} {quantization}")
    writer.add_file_type(int(gguf.LlamaFileType[FILE_TYPES[quantization][0]]))
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_vocab_size(shape.n_vocab)
    if shape.n_expert:
        writer.add_expert_count(shape.n_expert)
        writer.add_expert_used_count(shape.n_expert_used)
    if shape.arch == "gemma2" or shape.head_dim * shape.n_head != shape.n_embd:  # e.g. Mistral-Small-24B: 32 x 128 < 5120
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    if shape.arch == "gemma2":
        cfg = shape.config
        writer.add_attn_logit_softcapping(float(cfg.get("attn_logit_softcapping") or 50.0))
        writer.add_final_logit_softcapping(float(cfg.get("final_logit_softcapping") or 30.0))
        writer.add_sliding_window(int(cfg.get("sliding_window") or 4096))
    tokens, scores, types = zip(*_vocab(shape.n_vocab))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(list(tokens))
    writer.add_token_scores(list(scores))
    writer.add_token_types(list(types))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)


def write_random_gguf(config_dir: Path, quantization: str, out: Path, seed: int = 0) -> Path:
    """Write (atomically) a random-weight GGUF of the architecture in `config_dir` in `quantization`."""
    import gguf

    shape = Shape.from_config(config_dir)
    planned = plan(shape, quantization)
    rng = np.random.default_rng(seed)
    pools: dict[str, np.ndarray] = {}
    with atomic_file(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), shape.arch)
        _metadata(writer, shape, quantization)
        for t in planned:
            qtype = gguf.GGMLQuantizationType[t.type]
            if t.type in ("F32", "F16"):
                dtype = np.float32 if t.type == "F32" else np.float16
                nbytes = int(np.prod(t.shape)) * np.dtype(dtype).itemsize
                writer.add_tensor_info(t.name, t.shape, np.dtype(dtype), nbytes)
            else:
                block, type_size = gguf.GGML_QUANT_SIZES[qtype]
                byte_shape = (*t.shape[:-1], t.shape[-1] // block * type_size)
                writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                                       raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in planned:
            data = _data(t, pools, rng)
            writer.write_tensor_data(data.view(np.float16) if t.type == "F16" else data)
        writer.close()
    logger.info("wrote random %s GGUF of %s: %s (%.2f GB)", quantization, config_dir, out, out.stat().st_size / 1e9)
    return out


def random_gguf(config_dir: Path, quantization: str, cache_dir: Path, keep: int | None = None) -> Path:
    """The cached random GGUF for (`config_dir`, `quantization`), written on first use. `keep` bounds how many
    such files the cache holds (the oldest go first): full-size files are 1-50 GB each."""
    digest = hashlib.sha256((config_dir / "config.json").read_bytes()).hexdigest()[:8]
    target = cache_dir / f"random-{config_dir.name}-{digest}-{quantization.upper()}.gguf"
    if target.is_file():
        return target
    if keep is not None:
        old = sorted(cache_dir.glob("random-*.gguf"), key=lambda p: p.stat().st_mtime)
        for stale in old[: max(0, len(old) - keep + 1)]:
            logger.info("random GGUF cache: removing %s", stale)
            stale.unlink(missing_ok=True)
    return write_random_gguf(config_dir, quantization.upper(), target)

