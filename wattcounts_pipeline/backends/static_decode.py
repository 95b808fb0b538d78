"""Greedy decoding over a static KV cache, the one-token step replayed as CUDA graphs.

Why not `generate(cache_implementation="static")`: it compiles the same forward, but between steps it runs
its logits processors and stopping checks and waits for the GPU (is every sequence finished?), so the host
work of each step adds to the GPU's. On the H200 that left the compiled 8B decode at 7.0 ms per token, 47%
of the memory roofline. A workload of fixed output length never needs to look at a token before the end,
so here the host queues every step without waiting and the GPU runs them back to back.

Modes: "compile", the step compiled by torch.compile (inductor's fused kernels) into CUDA graphs, ~130 s
of compilation per shape for an 8B model; "capture", the eager step (aten's kernels, unfused) recorded
once per shape into a CUDA graph with `torch.cuda.graph`, in about a second; "eager", the same loop
without graphs (a reference, and what a CPU runs). Capturing works because the step never reads a value
back to the host: the cache's write position is a device tensor (checked for every architecture in
tests/unit/test_static_decode.py), so one recording replays correctly at every position.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MODES = ("eager", "compile", "capture")


@dataclass
class _Slot:
    """Everything one (batch, length) shape keeps between calls: its cache and, when captured, the graph
    with the input buffers it reads (the step's addresses are baked into it)."""

    cache: Any
    mask: Any = None
    token: Any = None
    position: Any = None
    graph: Any = None


def static_cache(config: Any, length: int) -> Any:
    """A StaticCache of `length` whose sliding-window layers (Gemma-2's every other layer, Phi-3's all) are plain
    static ones. Such a layer counts its length in a host int, which a graph would freeze at its recording, and
    while the window spans the whole cache it holds exactly what a plain layer holds. A window shorter than
    the cache is refused rather than decoded wrong."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer

    cache = StaticCache(config=config, max_cache_len=length)
    for i, layer in enumerate(cache.layers):
        if isinstance(layer, StaticSlidingWindowLayer):
            if layer.max_cache_len < length:
                raise ValueError(f"sliding window of {layer.max_cache_len} tokens is shorter than the {length}-token "
                                 "cache: the static decode loop does not roll a window")
            cache.layers[i] = StaticLayer(max_cache_len=length)
    return cache


class StaticDecoder:
    """Decodes batches of left-padded prompts to a fixed length; keeps one cache per (batch, length)."""

    def __init__(self, model: Any, mode: str = "compile") -> None:
        import torch

        if mode not in MODES:
            raise ValueError(f"StaticDecoder mode {mode!r}; use one of {MODES}")
        self.model = model
        # transformers renamed the forward's cache argument: past_key_values in 5.17 (the GPU host), cache in 5.24
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.mode = mode
        self._step: Callable[..., Any] = self._next_token
        if mode == "compile":
            # Dynamo keeps compiled code per function, across instances: a sweep process that measures many
            # compiled configurations (a new model and shape each) would pass its recompile limit (8) and,
            # fullgraph, fail every later one. One decoder per model: start from a clean slate.
            torch._dynamo.reset()
            # dynamic=True is what the recorded rows ran with; the batch still specializes (the cache's static
            # tensors fix it), so each configuration compiles its own shape during warm-up.
            self._step = torch.compile(self._next_token, mode="reduce-overhead", fullgraph=True, dynamic=True)
        self._slots: dict[tuple[int, int], _Slot] = {}

    def _next_token(self, ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1, **{self.cache_arg: cache}).logits
        return logits[:, -1].argmax(dim=-1, keepdim=True)

    def _advance(self, slot: _Slot) -> None:
        """One step in place: the next token into `slot.token`, the position one further (what a graph replays)."""
        slot.token.copy_(self._next_token(slot.token, slot.mask, slot.position, slot.cache))
        slot.position.add_(1)

    def _slot(self, batch: int, length: int, device: Any, record: bool) -> _Slot:
        """The slot for this shape with its cache zeroed, recorded first if `record` (capture mode). Kept across
        calls (a measurement alternates a full run with a prefill-only one): a new cache would have to be
        recorded again inside a measured window."""
        import torch

        slot = self._slots.get((batch, length))
        if slot is None:
            slot = self._slots[(batch, length)] = _Slot(static_cache(self.model.config, length))
            if self.mode == "capture":
                slot.mask = torch.ones(batch, length, dtype=torch.long, device=device)
                slot.token = torch.zeros(batch, 1, dtype=torch.long, device=device)
                slot.position = torch.zeros(batch, 1, dtype=torch.long, device=device)
        if record and self.mode == "capture" and slot.graph is None:
            slot.graph = self._capture(slot)
        slot.cache.reset()
        return slot

    def _capture(self, slot: _Slot) -> Any:
        """Record `_advance` into a CUDA graph. The steps run here write into the cache, which the caller resets."""
        import torch

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # lazy allocations (the cache, cuBLAS workspaces) happen outside the graph
            for _ in range(2):
                self._advance(slot)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._advance(slot)
        return graph

    def generate(self, ids: Any, mask: Any, new_tokens: int, on_first_token: Callable[[], None] | None = None) -> Any:
        """The `new_tokens` greedy tokens after each prompt, shape (batch, new_tokens). `ids` and `mask` are
        left-padded (batch, width); the prefill runs eagerly, then `on_first_token` (e.g. a clock) is called."""
        import torch

        batch, width = ids.shape
        with torch.inference_mode():  # the cache's tensors are inference tensors: reset them in this mode too
            slot = self._slot(batch, width + new_tokens, ids.device, record=new_tokens > 1)
            full_mask = torch.ones(batch, width + new_tokens, dtype=mask.dtype, device=mask.device)
            full_mask[:, :width] = mask
            positions = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
            if self.mode == "capture":
                full_mask = slot.mask.copy_(full_mask)
            token = self._next_token(ids, full_mask, positions, slot.cache)
            if on_first_token is not None:
                on_first_token()
            position = positions[:, -1:] + 1
            tokens = [token]
            if self.mode == "capture":
                slot.token.copy_(token)
                slot.position.copy_(position)
                for _ in range(new_tokens - 1):
                    slot.graph.replay()
                    tokens.append(slot.token.clone())
                return torch.cat(tokens, dim=1)
            for _ in range(new_tokens - 1):
                if self.mode == "compile":
                    torch.compiler.cudagraph_mark_step_begin()
                token = self._step(token, full_mask, position, slot.cache).clone()  # the graph reuses its output
                position = position + 1
                tokens.append(token)
        return torch.cat(tokens, dim=1)
