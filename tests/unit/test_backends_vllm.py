"""vLLM backend: clear errors without vLLM; a real offline run where vLLM is importable (skipped in CI)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from wattcounts_pipeline import paths
from wattcounts_pipeline.backends.base import Prompt, backend_class
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload


def _spec(**engine_args: object) -> ExperimentSpec:
    model = ModelRef("qwen", "config:models/configs/qwen2.5-0.5b", weights="random", tokenizer="models/tiny-llama")
    return ExperimentSpec("t", model, "vllm", "F32", "float32", Workload("w", input_tokens=16, output_tokens=4,
                                                                         num_requests=2),
                          engine_args=tuple(sorted(engine_args.items())))


def test_missing_vllm_names_the_interpreter(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named vllm' >&2\nexit 1\n")
    python.chmod(0o755)
    backend = backend_class("vllm")(_spec(python=str(python)), paths.REPO_ROOT / "models/configs/qwen2.5-0.5b")
    with pytest.raises(BackendError, match=f"vllm is not importable by {python}"):
        backend.load()


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(BackendError, match="mode must be"):
        backend_class("vllm")(_spec(mode="batchy"), Path("x"))


@pytest.mark.skipif(not os.environ.get("WATTCOUNTS_VLLM_PYTHON") and importlib.util.find_spec("vllm") is None,
                    reason="vllm not installed here (or set WATTCOUNTS_VLLM_PYTHON to a venv with vllm)")
def test_offline_dummy_weights_generate_fixed_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path))
    spec = _spec(gpu_memory_utilization=0.25, max_model_len=256, enforce_eager=True)
    backend = backend_class("vllm")(spec, paths.REPO_ROOT / "models/configs/qwen2.5-0.5b")
    backend.load()
    try:
        ids = backend.bos_token_ids + backend.tokenize("one two three four")
        results = backend.generate([Prompt(tuple(ids), 4)] * 2, 2)
        assert [r.output_tokens for r in results] == [4, 4]
        assert all(0 < r.ttft_s <= r.e2e_s for r in results)
        assert backend.info()["engine_args"]["load_format"] == "dummy"
    finally:
        backend.close()
