"""The InferenceBackend interface and a lazy registry of `"module:Class"` strings.

Heavy frameworks (torch, llama_cpp, vllm) are imported only when their backend is chosen, so the
pipeline, its tests and the UI start without them.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec


@dataclass(frozen=True)
class Prompt:
    """One request: exact prompt token ids and the number of tokens to generate (EOS ignored)."""

    token_ids: tuple[int, ...]
    max_new_tokens: int


@dataclass(frozen=True)
class RequestResult:
    """What one request took. Times are seconds; `start_s` is relative to the start of its run."""

    input_tokens: int
    output_tokens: int
    start_s: float
    ttft_s: float
    e2e_s: float

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (None for a single-token answer)."""
        if self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


class InferenceBackend(abc.ABC):
    """Runs fixed-length generation for one spec. One instance serves all repetitions of a spec."""

    framework: str = ""

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        self.spec = spec
        self.model_path = model_path

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights (or build random ones) and be ready to generate."""

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens."""

    @abc.abstractmethod
    def generate(self, prompts: list[Prompt], batch_size: int) -> list[RequestResult]:
        """Run all prompts, `batch_size` at a time, each producing exactly `max_new_tokens` tokens."""

    @property
    def bos_token_ids(self) -> list[int]:
        """Tokens to put before every prompt (a BOS token for most models)."""
        return []

    def sync(self) -> None:
        """Wait for queued device work (CUDA synchronize); a no-op on CPU."""

    def info(self) -> dict[str, Any]:
        """Framework version, device and effective engine arguments, stored with each run row."""
        return {}

    def close(self) -> None:
        """Free memory and stop any server."""


class HFTokenizerMixin:
    """tokenize/bos for backends holding a Hugging Face tokenizer in `self.tokenizer`."""

    tokenizer: Any

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def bos_token_ids(self) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [bos] if bos is not None else []


# Spellings accepted for a spec's dtype, mapped to torch's names.
DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                 "float16": "float16", "fp16": "float16"}


REGISTRY: dict[str, str] = {
    "llamacpp": "wattcounts_pipeline.backends.llamacpp:LlamaCppBackend",
    "llamacpp-server": "wattcounts_pipeline.backends.llamacpp_server:LlamaCppServerBackend",
    "transformers": "wattcounts_pipeline.backends.transformers_backend:TransformersBackend",
    "vllm": "wattcounts_pipeline.backends.vllm_backend:VLLMBackend",
    "openai": "wattcounts_pipeline.backends.openai_compat:OpenAICompatBackend",
}
# (framework, parallelism) pairs measured by another class than the framework's own
PARALLEL_REGISTRY: dict[tuple[str, str], str] = {
    ("transformers", "tensor"): "wattcounts_pipeline.backends.transformers_tp:TensorParallelTransformersBackend",
}


def backend_class(framework: str, parallelism: str = "none") -> type[InferenceBackend]:
    """Import and return the backend class for `framework` spread over GPUs by `parallelism`, with a clear
    error when it is unknown or its optional dependency is missing."""
    try:
        target = PARALLEL_REGISTRY.get((framework, parallelism)) or REGISTRY[framework]
    except KeyError:
        raise BackendError(f"unknown framework {framework!r}; known: {sorted(REGISTRY)}") from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"framework {framework!r} needs an optional dependency that is not installed ({exc}); "
            f"install the extra: pip install -e '.[{framework}]'"
        ) from exc
    return getattr(module, class_name)


def backend_for(spec: ExperimentSpec) -> type[InferenceBackend]:
    """The backend class measuring `spec`: its framework's, or the parallel variant it asks for."""
    return backend_class(spec.framework, spec.parallelism)
