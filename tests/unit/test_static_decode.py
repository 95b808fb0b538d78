"""The compiled decode loop must produce exactly what transformers' greedy generate produces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoConfig, AutoModelForCausalLM, StaticCache

from tests.helpers import REPO
from wattcounts_pipeline.backends.base import Prompt, backend_for
from wattcounts_pipeline.backends.static_decode import StaticDecoder, _Slot, static_cache
from wattcounts_pipeline.backends.transformers_backend import TransformersBackend
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

TINY = REPO / "models" / "tiny-llama"
CONFIGS = sorted((REPO / "models" / "configs").iterdir())


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(TINY), dtype=torch.float32).eval()


def reference(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int,
              pad_token_id: int = 2) -> torch.Tensor:
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, pad_token_id=pad_token_id)
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
    decoder = StaticDecoder(model, mode="eager")
    got = decoder.generate(ids, mask, 16)
    assert got.shape == (len(lengths), 16)
    assert torch.equal(got, reference(model, ids, mask, 16))


def test_cache_is_reused_per_shape_and_reset(model: torch.nn.Module) -> None:
    decoder = StaticDecoder(model, mode="eager")
    ids, mask = left_padded([6, 9])
    first = decoder.generate(ids, mask, 8)
    cache = decoder._slots[(2, 17)].cache
    assert torch.equal(decoder.generate(ids, mask, 8), first)  # a reset cache leaves nothing behind
    assert decoder._slots[(2, 17)].cache is cache
    decoder.generate(ids, mask, 1)  # a prefill-only run beside the full one keeps its own cache
    assert set(decoder._slots) == {(2, 17), (2, 10)} and decoder._slots[(2, 17)].cache is cache


def test_first_token_callback_runs_once_after_prefill(model: torch.nn.Module) -> None:
    calls: list[int] = []
    ids, mask = left_padded([5])
    StaticDecoder(model, mode="eager").generate(ids, mask, 6, on_first_token=lambda: calls.append(1))
    assert calls == [1]


def test_compiled_step_is_one_graph_and_token_identical(model: torch.nn.Module) -> None:
    """fullgraph=True: a graph break in a transformers update fails here rather than on the GPU host."""
    decoder = StaticDecoder(model, mode="compile")
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
    ({"compile": "capture", "parallelism": "pipeline", "gpus": 2}, "one GPU only"),
])
def test_unknown_or_unsupported_compile_modes_are_refused(engine_args: dict[str, object], message: str) -> None:
    spec = _spec(**engine_args)
    with pytest.raises(BackendError, match=message):
        backend_for(spec)(spec, TINY)


def test_one_process_compiles_decoder_after_decoder(model: torch.nn.Module) -> None:
    """A sweep builds a decoder per configuration: the dynamo recompile limit must never be reached
    (fullgraph turns it into a hard failure of every later configuration)."""
    # torch's own patcher: monkeypatch's undo deleted the setting from torch's config module, so every
    # later compile in the process failed with "recompile_limit does not exist"
    with torch._dynamo.config.patch(recompile_limit=1):
        for lengths in ([5, 7], [4, 6, 8]):
            ids, mask = left_padded(lengths)
            assert torch.equal(StaticDecoder(model).generate(ids, mask, 6), reference(model, ids, mask, 6))


# --- capture mode: CUDA graphs of the eager step. No GPU here, so the two properties a recording needs are
# checked on every architecture the GPU sweeps run: the step never reads a value back to the host, and one
# recording of it (make_fx: the aten ops with the tensors' storage, as a CUDA graph keeps their addresses),
# replayed step after step, decodes exactly what greedy `generate` decodes.

def small(config_dir: Path) -> torch.nn.Module:
    """The architecture of `config_dir` at toy size, with weights large enough that greedy tokens vary."""
    config = AutoConfig.from_pretrained(config_dir)
    for name, value in (("num_hidden_layers", 2), ("hidden_size", 64), ("intermediate_size", 128),
                        ("num_attention_heads", 4), ("num_key_value_heads", 2), ("head_dim", 16),
                        ("vocab_size", 512), ("pad_token_id", 0), ("num_local_experts", 4), ("num_experts_per_tok", 2),
                        ("initializer_range", 0.02 if config.model_type == "gemma2" else 0.3)):
        if hasattr(config, name):
            setattr(config, name, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # generate's min_new_tokens would mask EOS; the loop does not
    return model


class HostReads(TorchDispatchMode):
    """Fails on any op that makes the host wait for a device value: not allowed inside a CUDA graph."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.__name__.split(".")[0] in {"_local_scalar_dense", "nonzero", "masked_select", "unique", "equal"}:
            raise AssertionError(f"the step reads a device value on the host: {func}")
        return func(*args, **(kwargs or {}))


class Recording:
    """A CPU stand-in for torch.cuda.CUDAGraph: the ops of one call, replayed on the same tensors."""

    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        self.graph = make_fx(fn)()

    def replay(self) -> None:
        self.graph()


class RecordingDecoder(StaticDecoder):
    def _capture(self, slot: _Slot) -> Recording:
        for _ in range(2):  # as on the GPU: two steps first, then the recorded one
            self._advance(slot)
        return Recording(lambda: self._advance(slot))


def recording_decoder(model: torch.nn.Module) -> StaticDecoder:
    decoder = RecordingDecoder(model, mode="eager")
    decoder.mode = "capture"  # the capture loop, with buffers on the CPU
    return decoder


def prompts_of_mixed_length() -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = left_padded([5, 11, 8])
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("config_dir", CONFIGS, ids=[c.name for c in CONFIGS])
def test_recorded_step_replays_to_greedy_tokens(config_dir: Path) -> None:
    model = small(config_dir)
    ids, mask = prompts_of_mixed_length()
    expected = reference(model, ids, mask, 12, pad_token_id=0)
    decoder = recording_decoder(model)
    for _ in range(2):  # recorded once, replayed twice over a reset cache
        assert torch.equal(decoder.generate(ids, mask, 12), expected)
    assert len(decoder._slots) == 1 and decoder._slots[(3, 23)].graph is not None


@pytest.mark.parametrize("config_dir", CONFIGS, ids=[c.name for c in CONFIGS])
def test_decode_step_never_reads_a_device_value(config_dir: Path) -> None:
    model = small(config_dir)
    _, mask = prompts_of_mixed_length()
    decoder = StaticDecoder(model, mode="eager")
    with torch.inference_mode():
        slot = _Slot(static_cache(model.config, 23), mask=torch.cat([mask, torch.ones(3, 12, dtype=torch.long)], 1),
                     token=torch.zeros(3, 1, dtype=torch.long), position=torch.zeros(3, 1, dtype=torch.long))
        decoder._advance(slot)  # the cache allocates itself on the first step
        with HostReads():
            decoder._advance(slot)


def test_a_recording_over_transformers_sliding_window_layers_goes_wrong() -> None:
    """Why static_cache swaps them: a sliding-window layer keeps its length in a host int, which the
    recording freezes, so replays mask the wrong positions (Phi-3: every layer has a window)."""
    model = small(next(c for c in CONFIGS if c.name == "phi-3-mini"))
    ids, mask = prompts_of_mixed_length()
    expected = reference(model, ids, mask, 12, pad_token_id=0)
    decoder = recording_decoder(model)
    decoder._slots[(3, 23)] = _Slot(StaticCache(config=model.config, max_cache_len=23),
                                    mask=torch.ones(3, 23, dtype=torch.long), token=torch.zeros(3, 1, dtype=torch.long),
                                    position=torch.zeros(3, 1, dtype=torch.long))
    assert not torch.equal(decoder.generate(ids, mask, 12), expected)


def test_a_window_shorter_than_the_cache_is_refused() -> None:
    config = AutoConfig.from_pretrained(next(c for c in CONFIGS if c.name == "phi-3-mini"))
    config.sliding_window = 16
    with pytest.raises(ValueError, match="sliding window of 16 tokens is shorter than the 64-token cache"):
        static_cache(config, 64)


def test_capture_needs_a_cuda_device_and_a_known_mode(model: torch.nn.Module) -> None:
    with pytest.raises(BackendError, match="records CUDA graphs; device is 'cpu'"):
        TransformersBackend(_spec(compile="capture"), TINY).load()
    with pytest.raises(ValueError, match="mode 'fast'"):
        StaticDecoder(model, mode="fast")
