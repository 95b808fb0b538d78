"""Typed engine settings: which `engine_args` each framework takes, with their types, checked when a spec is made.

A spec's engine args are part of its configuration hash, so a misspelt key (`n_gpu_layer`) used to make a new
configuration that silently ran the engine's default. Now each framework has a dataclass of the keys it reads
(its backend's own switches, plus the engine's native keyword arguments passed through) and a spec naming any
other key, or a value of the wrong type, is refused by name with the keys available. Defaults stay with the
backends (a field left unset means "the backend's default"), so existing configuration hashes do not change.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

from wattcounts_pipeline.core.errors import SpecError


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Keys every framework takes: how many GPUs the configuration spans and how the model is spread."""

    gpus: int | None = None
    parallelism: str | None = None  # none | pipeline | tensor (core/vocab.py PARALLELISMS)


@dataclass(frozen=True, kw_only=True)
class LlamaCppSettings(EngineSettings):
    """llama-cpp-python's `Llama(...)` keyword arguments (0.3.36) that a measurement may set."""

    n_ctx: int | None = None
    n_batch: int | None = None
    n_ubatch: int | None = None
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_gpu_layers: int | None = None
    main_gpu: int | None = None
    split_mode: int | None = None
    tensor_split: list[float] | None = None
    flash_attn: bool | str | None = None  # llama-server also takes on | off | auto
    offload_kqv: bool | None = None
    op_offload: bool | None = None
    swa_full: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    type_k: int | None = None
    type_v: int | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None


@dataclass(frozen=True, kw_only=True)
class LlamaCppServerSettings(LlamaCppSettings):
    """A llama.cpp server (`llama_cpp.server` or the C++ `llama-server`) and the client measuring it."""

    server: str | None = None  # llama_cpp.server | llama-server
    parallel: int | None = None  # llama-server slots (default: the batch size)
    interrupt_requests: bool | None = None
    timeout_s: float | None = None
    startup_timeout_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class TransformersSettings(EngineSettings):
    """The transformers backend's decode path and device; tensor parallelism's plan and timeouts."""

    compile: bool | str | None = None  # false | true | graphs | capture
    device: str | None = None  # auto | cpu | cuda | cuda:N
    tp_plan: str | dict[str, str] | None = None
    tp_timeout_s: float | None = None
    tp_load_timeout_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class VLLMSettings(EngineSettings):
    """How vLLM runs (offline engine or OpenAI server, which interpreter), and the `LLM(...)` arguments passed."""

    mode: str | None = None  # offline | server
    python: str | None = None
    timeout_s: float | None = None
    startup_timeout_s: float | None = None
    max_num_seqs: int | None = None
    tensor_parallel_size: int | None = None
    enforce_eager: bool | None = None
    load_format: str | None = None
    max_model_len: int | None = None
    quantization: str | None = None
    gpu_memory_utilization: float | None = None
    enable_prefix_caching: bool | None = None


@dataclass(frozen=True, kw_only=True)
class OpenAISettings(EngineSettings):
    """An OpenAI-compatible endpoint someone else runs (TGI, SGLang, vLLM, Ollama)."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None  # the name of the variable holding the key, never the key
    prompt_format: str | None = None  # ids | text
    tokenizer: str | None = None
    fixed_length: bool | None = None
    timeout_s: float | None = None


SETTINGS: dict[str, type[EngineSettings]] = {
    "llamacpp": LlamaCppSettings,
    "llamacpp-server": LlamaCppServerSettings,
    "transformers": TransformersSettings,
    "vllm": VLLMSettings,
    "openai": OpenAISettings,
}


def engine_settings(framework: str, args: dict[str, Any]) -> EngineSettings:
    """The typed settings of `args` for `framework`; a SpecError names each unknown key or mistyped value."""
    cls = SETTINGS[framework]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    reasons = []
    for key, value in sorted(args.items()):
        if key not in hints:
            close = difflib.get_close_matches(key, names, n=1)
            reasons.append(f"unknown key {key!r} for framework {framework!r}"
                           + (f" (did you mean {close[0]!r}?)" if close else "")
                           + f"; available: {', '.join(sorted(names))}")
        elif not _accepts(value, hints[key]):
            reasons.append(f"{key}: {value!r} is not {_describe(hints[key])}")
    if reasons:
        raise SpecError("engine_args: " + "; ".join(reasons))
    return cls(**args)


def _accepts(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_accepts(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(_accepts(v, item) for v in value)
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        return isinstance(value, dict) and all(_accepts(k, key_hint) and _accepts(v, value_hint)
                                               for k, v in value.items())
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    """`int | None` -> "an int" (None is "not set", which a key written in a spec never is)."""
    args = [h for h in typing.get_args(hint) if h is not type(None)] or [hint]
    words = [getattr(h, "__name__", str(h)) if typing.get_origin(h) is None else str(h) for h in args]
    return " or ".join(("an " if w[0] in "aeiou" else "a ") + w for w in words)
