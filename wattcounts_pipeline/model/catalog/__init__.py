"""Hardware and architecture catalogs: the datasheet and config.json numbers behind the roofline features.

The data live beside this module (hardware.yaml, architectures.yaml) so a new GPU or model is one YAML entry.
Lookups are forgiving about spelling (case, punctuation, vendor prefixes) but never guess: an unknown name
raises CatalogError listing what is known.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from wattcounts_pipeline.model.errors import CatalogError

logger = logging.getLogger(__name__)

CATALOG_DIR = Path(__file__).resolve().parent
CPU_FALLBACK = "cpu-generic"


@dataclass(frozen=True)
class Hardware:
    """One device kind; CPU entries describe one core (rows do not record core counts)."""

    key: str
    kind: str
    memory_gb: float | None
    memory_bandwidth_gb_s: float
    peak_bf16_tflops: float
    peak_fp8_tflops: float | None
    tdp_w: float
    source: str
    names: tuple[str, ...] = ()

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"


@dataclass(frozen=True)
class Architecture:
    """A transformer's shape; parameter counts follow from it (gated MLP, as every catalogued model has)."""

    key: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    source: str
    names: tuple[str, ...] = ()
    num_experts: int = 1
    experts_per_token: int = 1
    attention_bias: bool = False
    test_only: bool = False  # a model for tests and demos, never worth recommending

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def attention_params_per_layer(self) -> int:
        q_out, kv_out = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        bias = q_out + 2 * kv_out if self.attention_bias else 0
        return 2 * self.hidden_size * q_out + 2 * self.hidden_size * kv_out + bias

    @property
    def mlp_params_per_expert(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def expert_params(self) -> int:
        """MLP weights of all experts in all layers (all MLP weights for a dense model)."""
        return self.num_layers * self.num_experts * self.mlp_params_per_expert

    @property
    def total_params(self) -> int:
        router = self.hidden_size * self.num_experts if self.num_experts > 1 else 0
        per_layer = self.attention_params_per_layer + router + 2 * self.hidden_size
        head = 0 if self.tie_word_embeddings else self.embedding_params
        return self.embedding_params + head + self.hidden_size + self.num_layers * per_layer + self.expert_params

    @property
    def active_params(self) -> int:
        """Weights used per token: a mixture of experts runs only `experts_per_token` MLPs per layer."""
        idle = self.num_layers * (self.num_experts - self.experts_per_token) * self.mlp_params_per_expert
        return self.total_params - idle

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def kv_elements_per_token(self) -> int:
        """K and V values cached per token of context (times the cache's bytes per value gives bytes)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim


def _hardware_norm(name: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bnvidia\b|\bgeforce\b", " ", str(name).lower())
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _model_norm(name: str) -> str:
    text = str(name).strip().lower().rsplit("/", 1)[-1]
    text = re.sub(r"\.gguf$", "", text)
    return re.sub(r"[\s_]+", "-", text)


@functools.cache
def hardware_catalog() -> dict[str, Hardware]:
    """Every catalogued device, by key."""
    doc = yaml.safe_load((CATALOG_DIR / "hardware.yaml").read_text(encoding="utf-8"))
    return {key: Hardware(key=key, **{**entry, "names": tuple(entry.get("names", ()))}) for key, entry in doc.items()}


@functools.cache
def architecture_catalog() -> dict[str, Architecture]:
    """Every catalogued architecture, by key."""
    doc = yaml.safe_load((CATALOG_DIR / "architectures.yaml").read_text(encoding="utf-8"))
    return {key: Architecture(key=key, **{**entry, "names": tuple(entry.get("names", ()))})
            for key, entry in doc.items()}


@functools.cache
def _hardware_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for key, hw in hardware_catalog().items():
        for name in (key, *hw.names):
            index[_hardware_norm(name)] = key
    return index


def known_hardware() -> list[str]:
    return list(hardware_catalog())


def known_architectures() -> list[str]:
    return list(architecture_catalog())


def get_hardware(name: str) -> Hardware:
    """The device called `name` (catalog key, alias or NVML device name)."""
    key = _hardware_index().get(_hardware_norm(name))
    if key is None:
        raise CatalogError(f"unknown hardware {name!r}; known: {', '.join(known_hardware())} "
                           "(add it to wattcounts_pipeline/model/catalog/hardware.yaml)")
    return hardware_catalog()[key]


def hardware_for_row(gpu_name: str | None, gpu_count: int, cpu_model: str | None) -> Hardware:
    """The device a configurations row ran on: its GPU when it used one, else its CPU (fallback entry if unmatched)."""
    if gpu_count > 0 and gpu_name:
        return get_hardware(gpu_name)
    words = f" {_hardware_norm(cpu_model or '')} "
    for key, hw in hardware_catalog().items():
        if hw.kind == "cpu" and key != CPU_FALLBACK and any(f" {_hardware_norm(n)} " in words for n in hw.names):
            return hw
    logger.debug("CPU %r matches no catalogued CPU; using %s", cpu_model, CPU_FALLBACK)
    return hardware_catalog()[CPU_FALLBACK]


@functools.lru_cache(maxsize=4096)  # the catalog is fixed per process; a recommendation asks for the same few names ~2,000 times
def _match_architecture(text: str) -> Architecture | None:
    """The catalogued architecture whose longest name occurs in `text` as a whole token run."""
    target, best, best_len = _model_norm(text), None, 0
    for key, arch in architecture_catalog().items():
        for name in (key, *arch.names):
            norm = _model_norm(name)
            if len(norm) > best_len and re.search(rf"(?<![a-z0-9.]){re.escape(norm)}(?![a-z0-9])", target):
                best, best_len = arch, len(norm)
    return best


def get_architecture(model: str, architecture: str = "") -> Architecture:
    """The architecture of a model name (e.g. "meta-llama/Llama-3.1-8B-Instruct"), else of the `architecture` field."""
    for text in (model, architecture):
        if text and (arch := _match_architecture(text)) is not None:
            return arch
    raise CatalogError(f"unknown architecture for model {model!r} (architecture {architecture!r}); known: "
                       f"{', '.join(known_architectures())} "
                       "(add it to wattcounts_pipeline/model/catalog/architectures.yaml)")
