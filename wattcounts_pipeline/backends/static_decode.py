"""Greedy decoding over a static KV cache, the one-token step compiled into CUDA graphs.

Why not `generate(cache_implementation="static")`: it compiles the same forward, but between steps it runs
its logits processors and stopping checks and waits for the GPU (is every sequence finished?), so the host
work of each step adds to the GPU's. On the H200 that left the compiled 8B decode at 7.0 ms per token, 47%
of the memory roofline. A workload of fixed output length never needs to look at a token before the end,
so here the host queues every step without waiting and the GPU runs them back to back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


class StaticDecoder:
    """Decodes batches of left-padded prompts to a fixed length; keeps one cache per (batch, length)."""

    def __init__(self, model: Any, compile: bool = True) -> None:
        import torch

        self.model = model
        # transformers renamed the forward's cache argument: past_key_values in 5.17 (the GPU host), cache in 5.24
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.compile = compile
        if compile:
            # Dynamo keeps compiled code per function, across instances: a sweep process that measures many
            # compiled configurations (a new model and shape each) would pass its recompile limit (8) and,
            # fullgraph, fail every later one. One decoder per model: start from a clean slate.
            torch._dynamo.reset()
        # dynamic=True is what the recorded rows ran with; the batch still specializes (the cache's static
        # tensors fix it), so each configuration compiles its own shape during warm-up.
        self._step = torch.compile(self._next_token, mode="reduce-overhead", fullgraph=True, dynamic=True) \
            if compile else self._next_token
        self._caches: dict[tuple[int, int], Any] = {}

    def _next_token(self, ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1, **{self.cache_arg: cache}).logits
        return logits[:, -1].argmax(dim=-1, keepdim=True)

    def _fresh_cache(self, batch: int, length: int) -> Any:
        """The cache for this shape, zeroed. Kept across calls (a measurement alternates a full run with a
        prefill-only one): its tensors' addresses are baked into the CUDA graphs, and a new cache would
        re-record them inside a measured window."""
        from transformers import StaticCache

        cache = self._caches.get((batch, length))
        if cache is None:
            cache = self._caches[(batch, length)] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            cache.reset()
        return cache

    def generate(self, ids: Any, mask: Any, new_tokens: int, on_first_token: Callable[[], None] | None = None) -> Any:
        """The `new_tokens` greedy tokens after each prompt, shape (batch, new_tokens). `ids` and `mask` are
        left-padded (batch, width); the prefill runs eagerly, then `on_first_token` (e.g. a clock) is called."""
        import torch

        batch, width = ids.shape
        with torch.inference_mode():  # the cache's tensors are inference tensors: reset them in this mode too
            cache = self._fresh_cache(batch, width + new_tokens)
            full_mask = torch.ones(batch, width + new_tokens, dtype=mask.dtype, device=mask.device)
            full_mask[:, :width] = mask
            positions = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
            token = self._next_token(ids, full_mask, positions, cache)
            if on_first_token is not None:
                on_first_token()
            position = positions[:, -1:] + 1
            tokens = [token]
            for _ in range(new_tokens - 1):
                if self.compile:
                    torch.compiler.cudagraph_mark_step_begin()
                token = self._step(token, full_mask, position, cache).clone()  # the graph reuses its output
                position = position + 1
                tokens.append(token)
        return torch.cat(tokens, dim=1)
