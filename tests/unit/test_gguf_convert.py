"""GGUF → safetensors checkpoint: the same values as transformers' own GGUF load, converted once, never half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")

from transformers import AutoModelForCausalLM

from wattcounts_pipeline.backends.base import Prompt
from wattcounts_pipeline.backends.gguf_convert import DONE, checkpoint_from_gguf
from wattcounts_pipeline.backends.gguf_random import write_random_gguf
from wattcounts_pipeline.backends.transformers_backend import TransformersBackend
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec


@pytest.fixture()
def gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))
    config = tmp_path / "llama"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 512, "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5}))
    return write_random_gguf(config, "Q8_0", tmp_path / "tiny-Q8_0.gguf")


def test_checkpoint_holds_the_gguf_values_and_is_made_once(gguf_file: Path) -> None:
    folder = checkpoint_from_gguf(gguf_file)
    assert (folder / DONE).is_file() and (folder / "model.safetensors").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".incoming-")]
    direct = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    cached = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 33, 200]])
    assert torch.equal(direct(ids).logits, cached(ids).logits)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert checkpoint_from_gguf(gguf_file) == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(BackendError, match="GGUF file not found: .*missing.gguf"):
        checkpoint_from_gguf(gguf_file.with_name("missing.gguf"))


def test_transformers_backend_loads_a_gguf_through_the_checkpoint(gguf_file: Path) -> None:
    spec = ExperimentSpec.from_dict({
        "experiment": "t", "framework": "transformers", "quantization": "F32", "dtype": "float32",
        "model": {"name": "tiny-gguf", "source": f"gguf:{gguf_file}", "weights": "real", "architecture": "llama"},
        "engine_args": {"device": "cpu"},
        "workload": {"name": "w", "kind": "fixed", "input_tokens": 8, "output_tokens": 4, "num_requests": 1,
                     "batch_size": 1}})
    backend = TransformersBackend(spec, gguf_file)
    backend.load()
    try:
        loaded_from = Path(backend.model.name_or_path)
        results = backend.generate([Prompt(token_ids=tuple(range(3, 11)), max_new_tokens=4)], batch_size=1)
    finally:
        backend.close()
    assert [r.output_tokens for r in results] == [4]
    assert (loaded_from / DONE).is_file()  # loaded from the cached checkpoint, not the GGUF
