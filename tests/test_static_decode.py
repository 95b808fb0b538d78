"""The compiled decode loop must produce exactly what transformers' greedy generate produces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from wattcounts_pipeline.backends.base import Prompt, backend_for
from wattcounts_pipeline.backends.static_decode import StaticDecoder
from wattcounts_pipeline.backends.transformers_backend import TransformersBackend
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

TINY = Path(__file__).resolve().parent.parent / "models" / "tiny-llama"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(TINY), dtype=torch.float32).eval()


def reference(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int) -> torch.Tensor:
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, pad_token_id=2)
    return out[:, ids.shape[1]:]


def left_padded(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(sum(lengths))
    width = max(lengths)
    ids = torch.full((len(lengths), width), 2)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = torch.randint(3, 512, (n,), generator=generator)
        mask[row, width - n:] = 1
    return ids, mask


@pytest.mark.parametrize("lengths", [[7, 7, 7], [5, 11, 8]], ids=["equal", "left-padded"])
def test_tokens_match_greedy_generate(model: torch.nn.Module, lengths: list[int]) -> None:
    ids, mask = left_padded(lengths)
    decoder = StaticDecoder(model, compile=False)
    got = decoder.generate(ids, mask, 16)
    assert got.shape == (len(lengths), 16)
    assert torch.equal(got, reference(model, ids, mask, 16))


def test_cache_is_reused_per_shape_and_reset(model: torch.nn.Module) -> None:
    decoder = StaticDecoder(model, compile=False)
    ids, mask = left_padded([6, 9])
    first = decoder.generate(ids, mask, 8)
    cache = decoder._caches[(2, 17)]
    assert torch.equal(decoder.generate(ids, mask, 8), first)  # a reset cache leaves nothing behind
    assert decoder._caches[(2, 17)] is cache
    decoder.generate(ids, mask, 1)  # a prefill-only run beside the full one keeps its own cache
    assert set(decoder._caches) == {(2, 17), (2, 10)} and decoder._caches[(2, 17)] is cache


def test_first_token_callback_runs_once_after_prefill(model: torch.nn.Module) -> None:
    calls: list[int] = []
    ids, mask = left_padded([5])
    StaticDecoder(model, compile=False).generate(ids, mask, 6, on_first_token=lambda: calls.append(1))
    assert calls == [1]


def test_compiled_step_is_one_graph_and_token_identical(model: torch.nn.Module) -> None:
    """fullgraph=True: a graph break in a transformers update fails here rather than on the GPU host."""
    decoder = StaticDecoder(model, compile=True)
    for lengths, new_tokens in (([6, 9], 10), ([6, 9], 10), ([5, 8, 7], 14)):  # replayed, then a new shape
        ids, mask = left_padded(lengths)
        assert torch.equal(decoder.generate(ids, mask, new_tokens), reference(model, ids, mask, new_tokens))


def _spec(**engine_args: object) -> ExperimentSpec:
    return ExperimentSpec.from_dict({
        "experiment": "t", "framework": "transformers", "quantization": "F32", "dtype": "float32",
        "model": {"name": "tiny", "source": "config:models/tiny-llama", "weights": "random", "architecture": "llama"},
        "engine_args": {"device": "cpu", **engine_args},
        "workload": {"name": "w", "kind": "fixed", "input_tokens": 8, "output_tokens": 5, "num_requests": 2,
                     "batch_size": 2}})


def test_backend_graphs_mode_decodes_fixed_length_with_a_first_token_time() -> None:
    backend = TransformersBackend(_spec(compile="graphs"), TINY)
    backend.load()
    try:
        prompts = [Prompt(token_ids=tuple(range(3, 11)), max_new_tokens=5)] * 2
        results = backend.generate(prompts, batch_size=2)
    finally:
        backend.close()
    assert [r.output_tokens for r in results] == [5, 5]
    assert all(0 < r.ttft_s < r.e2e_s for r in results)
    assert backend.info()["engine_args"]["compile"] == "graphs"


@pytest.mark.parametrize(("engine_args", "message"), [
    ({"compile": "max"}, "compile='max'"),
    ({"compile": "graphs", "parallelism": "tensor", "gpus": 2}, "one GPU only"),
])
def test_unknown_or_unsupported_compile_modes_are_refused(engine_args: dict[str, object], message: str) -> None:
    spec = _spec(**engine_args)
    with pytest.raises(BackendError, match=message):
        backend_for(spec)(spec, TINY)


def test_one_process_compiles_decoder_after_decoder(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep builds a decoder per configuration: the dynamo recompile limit must never be reached
    (fullgraph turns it into a hard failure of every later configuration)."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    for lengths in ([5, 7], [4, 6, 8]):
        ids, mask = left_padded(lengths)
        assert torch.equal(StaticDecoder(model).generate(ids, mask, 6), reference(model, ids, mask, 6))
