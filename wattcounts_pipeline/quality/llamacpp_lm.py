"""An in-process llama.cpp model for lm-eval, fast enough for multiple choice on a laptop CPU.

Why not lm-eval's own `gguf` model or `Llama(logits_all=True)`: both compute full-vocabulary logits
for every prompt position. With Gemma 3's 262k vocabulary the output projection costs more than the
whole transformer, so this model asks llama.cpp for logits only where a continuation token is scored,
and scores all choices of a question in one `llama_decode`: the shared context is decoded once into
sequence 0, its KV cells are shared with one sequence per choice (`kv_unified`), and each choice's
tokens go into its own sequence. The context decoded last stays cached, so the next request reuses
its longest common token prefix.

Scores must not depend on that cache, i.e. on how tokens happen to be batched. llama.cpp's CPU
kernels give batch-dependent results for Gemma 3 (up to ~5% on a log-prob) unless three settings
hold together, all set here: no repacked weights (`model_params`), flash attention, and physical
batches shorter than the 64 queries at which the CPU switches to its tiled flash-attention kernel
(`N_UBATCH`). With them a token scores identically (to ~1e-9) alone, in any batch or beside other
sequences, which is what the equality test against `Llama(logits_all=True)` checks.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from lm_eval import utils as lm_utils
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from wattcounts_pipeline.backends.llamacpp_lib import load_llama_cpp
from wattcounts_pipeline.core.errors import QualityError

llama_cpp = load_llama_cpp()

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from llama_cpp.llama_cpp import llama_model_params
    from lm_eval.api.instance import Instance

logger = logging.getLogger(__name__)

MODEL_NAME = "wc-llamacpp"
_LOGSOFTMAX_ROWS = 64  # rows per log-softmax block: bounds the temporary copy to 64 MiB at 262k vocab
N_UBATCH = 32  # physical batch: below the CPU flash-attention tile (64), ~20% slower prefill, batch-invariant


def model_params() -> llama_model_params:
    """Model parameters without the CPU "extra" buffer types (weights repacked for batched GEMM).

    With repacked weights a token's activations are quantized differently depending on where it
    falls in the batch, so its log-probs move with the batch split. Without them the scores are
    batch-invariant, and on a 2-core CPU the short batches of multiple choice also run faster.
    """
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False
    return params


@register_model(MODEL_NAME)
class LlamaCppLM(LM):
    """lm-eval LM over a GGUF file through llama.cpp's C API (loglikelihood, rolling, greedy generation)."""

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_seq_max: int = 8,
        n_threads: int | None = None,
        max_gen_toks: int = 256,
        verbose: bool = False,
        n_ubatch: int | None = None,
        **ignored: Any,
    ) -> None:
        super().__init__()
        if ignored:
            # lm-eval passes batch_size/device/max_batch_size to every model; they mean nothing here.
            logger.debug("ignoring lm-eval model arguments %s", sorted(ignored))
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise QualityError(f"GGUF model file not found: {self.model_path}")
        self.n_ctx = int(n_ctx)
        self.n_batch = int(n_batch)
        self.n_seq_max = int(n_seq_max)
        self.max_gen_toks = int(max_gen_toks)
        threads = int(n_threads) if n_threads else (os.cpu_count() or 1)

        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        llama_cpp.llama_backend_init()
        self._model = llama_cpp.llama_model_load_from_file(str(self.model_path).encode(), model_params())
        if not self._model:
            raise QualityError(f"llama.cpp could not load GGUF model {self.model_path}")

        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = self.n_ctx
        ctx_params.n_batch = self.n_batch
        # n_ubatch: batch-invariant N_UBATCH unless a caller that decodes identical batches in every model
        # it compares asks for speed (divergence.py: a full-length physical batch prefills ~6x faster)
        ctx_params.n_ubatch = min(self.n_batch, int(n_ubatch) if n_ubatch else N_UBATCH)
        ctx_params.n_seq_max = self.n_seq_max
        ctx_params.n_threads = threads
        ctx_params.n_threads_batch = threads
        ctx_params.kv_unified = True  # choices share the context's KV cells; every sequence may use all of n_ctx
        ctx_params.swa_full = True  # sliding-window layers keep every cell, so a cached prefix can be trimmed anywhere
        ctx_params.no_perf = True
        # Flash attention: the non-flash CPU path's log-probs depend on the batch split (module docstring).
        ctx_params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self._ctx = llama_cpp.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise QualityError(f"llama.cpp could not create a context for {self.model_path}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, self.n_seq_max)
        self._cached: list[int] = []  # tokens held in sequence 0 at positions 0..len-1

        bos = llama_cpp.llama_vocab_bos(self._vocab)
        self.prefix_token_id = bos if bos >= 0 else llama_cpp.llama_vocab_eos(self._vocab)
        self._add_special = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        logger.info(
            "loaded %s (vocab %d, n_ctx %d, %d threads)", self.model_path.name, self.n_vocab, self.n_ctx, threads
        )

    def __del__(self) -> None:
        """Free the C objects; the model can be garbage-collected between evaluations."""
        if getattr(self, "_batch", None) is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
            self._model = None

    # ------------------------------------------------------------------ tokens
    def tok_encode(self, text: str, add_special: bool | None = None) -> list[int]:
        """Tokenize plain text (special-token markup is not parsed); BOS added as the model asks."""
        add = self._add_special if add_special is None else add_special
        data = text.encode("utf-8")
        size = len(data) + 8
        while True:
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, size, add, False)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def _piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing)."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Split (context, continuation) into tokens the way lm-eval's HFLM does.

        Trailing context spaces move into the continuation; the continuation tokens are the tail of
        the joint tokenization, so a word is scored as the model would actually spell it.
        """
        if not context:
            return [self.prefix_token_id], self.tok_encode(continuation, add_special=False)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tok_encode(context + continuation)
        ctx_tokens = self.tok_encode(context)
        return ctx_tokens, whole[len(ctx_tokens) :]

    # ------------------------------------------------------------------ KV cache and decoding
    def _reuse_prefix(self, tokens: Sequence[int]) -> int:
        """Keep the longest cached prefix of `tokens` in sequence 0 (at least one token left to decode)."""
        llama_cpp.llama_memory_seq_keep(self._mem, 0)
        n = 0
        limit = min(len(self._cached), len(tokens) - 1)
        while n < limit and self._cached[n] == tokens[n]:
            n += 1
        if not llama_cpp.llama_memory_seq_rm(self._mem, 0, n, -1):
            llama_cpp.llama_memory_clear(self._mem, True)
            n = 0
        del self._cached[n:]
        return n

    def _decode(self, entries: list[tuple[int, int, tuple[int, ...], bool]]) -> Iterator[np.ndarray]:
        """Decode (token, pos, seq_ids, want_logits) entries in n_batch chunks, yielding each chunk's logit rows.

        A yielded array is a view of llama.cpp's output buffer, rows in entry order; it is valid only
        until the generator resumes, which is why this yields instead of collecting: a 2048-token
        perplexity window would need 2 GiB of rows at Gemma's vocabulary.
        """
        batch = self._batch
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start : start + self.n_batch]
            n_out = 0
            for i, (token, pos, seq_ids, want) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = len(seq_ids)
                for j, seq in enumerate(seq_ids):
                    batch.seq_id[i][j] = seq
                batch.logits[i] = want
                n_out += want
            batch.n_tokens = len(chunk)
            status = llama_cpp.llama_decode(self._ctx, batch)
            if status != 0:
                llama_cpp.llama_memory_clear(self._mem, True)
                self._cached = []
                raise QualityError(f"llama_decode failed with status {status} on {len(chunk)} tokens")
            if n_out:
                out = np.ctypeslib.as_array(llama_cpp.llama_get_logits(self._ctx), shape=(n_out * self.n_vocab,))
                yield out.reshape(n_out, self.n_vocab)

    def window_logits(self, tokens: Sequence[int], first_row: int) -> Iterator[np.ndarray]:
        """Decode `tokens` alone (positions 0..n-1, cache emptied first), yielding the full-vocabulary logit
        rows of positions >= `first_row` chunk by chunk, as `_decode` does (each a view valid until the
        generator resumes). For comparing whole next-token distributions (quality/divergence.py)."""
        if not 0 < len(tokens) <= self.n_ctx:
            raise QualityError(f"a window of {len(tokens)} tokens does not fit n_ctx={self.n_ctx}")
        llama_cpp.llama_memory_clear(self._mem, True)
        self._cached = []  # the window is not a prefix later requests may reuse
        yield from self._decode([(tok, pos, (0,), pos >= first_row) for pos, tok in enumerate(tokens)])

    @staticmethod
    def _token_logprobs(rows: np.ndarray, row_ids: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-softmax of rows[row_ids] at targets, and whether each target is its row's argmax."""
        lse = np.empty(len(rows), dtype=np.float64)
        peak = rows.max(axis=1)
        for start in range(0, len(rows), _LOGSOFTMAX_ROWS):
            block = rows[start : start + _LOGSOFTMAX_ROWS]
            top = peak[start : start + _LOGSOFTMAX_ROWS, None]
            lse[start : start + len(block)] = top[:, 0] + np.log(np.exp(block - top).sum(axis=1, dtype=np.float64))
        picked = rows[row_ids, targets]
        return picked - lse[row_ids], picked >= peak[row_ids]

    def _score_choices(self, context: list[int], continuations: list[list[int]]) -> list[tuple[float, bool]]:
        """Score continuations that share one context; choices are packed into as few decodes as fit."""
        # A choice occupies len(context) + len(cont) - 1 cells: its last token is scored, never decoded.
        longest = max(len(c) for c in continuations)
        if longest == 0 or longest > self.n_ctx:
            raise QualityError(f"continuation of {longest} tokens cannot be scored with n_ctx={self.n_ctx}")
        if len(context) + longest - 1 > self.n_ctx:  # left-truncate, as lm-eval does, keeping the continuation whole
            context = context[len(context) + longest - 1 - self.n_ctx :]
        results: list[tuple[float, bool]] = []
        pending = list(continuations)
        while pending:
            group: list[list[int]] = []
            cells = len(context)
            while pending and len(group) < self.n_seq_max and cells + len(pending[0]) - 1 <= self.n_ctx:
                cells += len(pending[0]) - 1
                group.append(pending.pop(0))
            results.extend(self._score_group(context, group))
        return results

    def _score_group(self, context: list[int], group: list[list[int]]) -> list[tuple[float, bool]]:
        """One pass: context (shared by sequences 0..k-1) plus each choice in its own sequence."""
        start = self._reuse_prefix(context)
        seqs = tuple(range(len(group)))
        for seq in seqs[1:]:
            llama_cpp.llama_memory_seq_cp(self._mem, 0, seq, 0, start)
        n_ctx_tokens = len(context)
        entries = [(context[pos], pos, seqs, pos == n_ctx_tokens - 1) for pos in range(start, n_ctx_tokens)]
        # The last context row predicts every choice's first token; the row of cont[j] predicts cont[j+1].
        row_targets: list[list[int]] = [[cont[0] for cont in group]]
        owners: list[int] = list(seqs)
        for seq, cont in enumerate(group):
            entries.extend((tok, n_ctx_tokens + j, (seq,), True) for j, tok in enumerate(cont[:-1]))
            row_targets.extend([tok] for tok in cont[1:])
            owners.extend([seq] * (len(cont) - 1))
        logprob = np.zeros(len(group))
        greedy = np.ones(len(group), dtype=bool)
        rows_done = targets_done = 0
        for rows in self._decode(entries):
            targets = row_targets[rows_done : rows_done + len(rows)]
            row_ids = np.repeat(np.arange(len(rows)), [len(t) for t in targets])
            flat = np.fromiter((tok for t in targets for tok in t), dtype=np.int64, count=len(row_ids))
            lp, gr = self._token_logprobs(rows, row_ids, flat)
            who = np.asarray(owners[targets_done : targets_done + len(flat)])
            np.add.at(logprob, who, lp)
            np.logical_and.at(greedy, who, gr)
            rows_done += len(rows)
            targets_done += len(flat)
        self._cached = list(context)
        return [(float(lp), bool(gr)) for lp, gr in zip(logprob, greedy, strict=True)]

    # ------------------------------------------------------------------ lm-eval interface
    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Log P(continuation | context) and greediness; requests sharing a context are scored together."""
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = defaultdict(list)
        for index, request in enumerate(requests):
            ctx, cont = self._encode_pair(*request.args)
            groups[tuple(ctx)].append((index, cont))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        # Sorted token contexts put shared prefixes (few-shot examples) next to each other.
        for ctx in tqdm(sorted(groups), desc="loglikelihood", disable=disable_tqdm):
            members = groups[ctx]
            scores = self._score_choices(list(ctx), [cont for _, cont in members])
            for (index, _), score in zip(members, scores, strict=True):
                results[index] = score
                self.cache_hook.add_partial("loglikelihood", requests[index].args, score)
        return results

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """Total log-likelihood of each text, in disjoint n_ctx windows (lm-eval's rolling scheme)."""
        results: list[float] = []
        for request in tqdm(requests, desc="loglikelihood_rolling", disable=disable_tqdm):
            (text,) = request.args
            windows = map(
                lm_utils.make_disjoint_window,
                lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(text, add_special=False),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.n_ctx,
                    context_len=1,
                ),
            )
            total = sum(self._score_choices(ctx, [cont])[0][0] for ctx, cont in windows)
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return results

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Greedy decoding until a stop string, an end-of-generation token or max_gen_toks."""
        results: list[str] = []
        for request in tqdm(requests, desc="generate_until", disable=disable_tqdm):
            context, gen_kwargs = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            if gen_kwargs.get("do_sample") and float(gen_kwargs.get("temperature", 0.0)) > 0.0:
                logger.warning("sampling requested; %s decodes greedily", MODEL_NAME)
            text = self._generate(self.tok_encode(context), until, max_new)
            results.append(text)
            self.cache_hook.add_partial("generate_until", request.args, text)
        return results

    def _generate(self, prompt: list[int], until: list[str], max_new: int) -> str:
        """Greedy continuation of `prompt`, cut at the first stop string."""
        max_new = min(max_new, self.n_ctx - 1)
        prompt = prompt[max(0, len(prompt) + max_new - self.n_ctx) :]
        start = self._reuse_prefix(prompt)
        token = self._next_token(
            [(prompt[pos], pos, (0,), pos == len(prompt) - 1) for pos in range(start, len(prompt))]
        )
        self._cached = list(prompt)
        out = b""
        for _ in range(max_new):
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            out += self._piece(token)
            text = out.decode("utf-8", errors="ignore")
            cut = min((text.index(stop) for stop in until if stop in text), default=-1)
            if cut >= 0:
                return text[:cut]
            position = len(self._cached)
            self._cached.append(token)
            token = self._next_token([(token, position, (0,), True)])
        return out.decode("utf-8", errors="ignore")

    def _next_token(self, entries: list[tuple[int, int, tuple[int, ...], bool]]) -> int:
        """Decode entries (only the last wants logits) and return the greedy next token."""
        *_, rows = self._decode(entries)
        return int(rows[-1].argmax())

    def get_model_info(self) -> dict[str, Any]:
        """Recorded by lm-eval in its results config."""
        return {"model_path": str(self.model_path), "n_ctx": self.n_ctx, "backend": "llama.cpp"}
