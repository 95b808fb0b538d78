"""How far a quantized model's next-token distribution moves from its parent's: llama.cpp's way of
judging a quantization (`llama-perplexity --kl-divergence`).

Accuracy on a few hundred multiple-choice questions cannot separate neighbouring quantizations (a
stderr of 1.5 points at 1000 items hides most of them); the KL divergence of the full next-token
distribution can, because every token of a text is a measurement and the comparison is paired: both
models see the same tokens. Method, as llama.cpp's perplexity tool: the token stream is cut into
disjoint windows of `n_ctx` tokens, the first token of each replaced by BOS, and only the second half
of each window is scored (every scored token has at least n_ctx/2 tokens of context). Per scored token:
KL(parent || rung) over the whole vocabulary, each model's negative log-likelihood of the true next
token, and whether both models put the same token on top.

Memory: Gemma 3's vocabulary is 262,144, so one window's logit rows are 267 MB per model. The models
are decoded alternately, window by window, each in its own llama.cpp context, and the rows are read
straight from llama.cpp's output buffers (`LlamaCppLM.window_logits`); log-softmax runs in float64
over blocks of `ROW_BLOCK` rows, so no more than one window of logits per model is ever held.

Intervals: tokens of one window share their context, so their values are correlated and the per-token
standard error understates the uncertainty. The 95% intervals here treat the window as the unit:
Student-t over the per-window means (the per-token standard error is kept beside it, for comparison
with llama.cpp's output, which uses it). Differences between two models (rung vs parent, or two rungs)
are paired the same way: per-window means of the per-token differences.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattcounts_pipeline.core.errors import QualityError
from wattcounts_pipeline.core.stats import Z95, t95
from wattcounts_pipeline.quality.llamacpp_lm import LlamaCppLM
from wattcounts_pipeline.quality.tasks import DATA_DIR

N_CTX = 512  # llama.cpp perplexity's default window
ROW_BLOCK = 64  # rows per float64 log-softmax block: 128 MiB per array at Gemma's 262k vocabulary
WIKITEXT2 = DATA_DIR / "wikitext2.jsonl"


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% interval (Student-t over windows) and the naive per-token standard error."""

    mean: float
    ci95_low: float
    ci95_high: float
    se_per_token: float

    def excludes(self, value: float) -> bool:
        """Whether `value` lies outside the interval (a difference "beyond noise" when value is 0)."""
        return not self.ci95_low <= value <= self.ci95_high


@dataclass(frozen=True)
class Divergence:
    """One rung against its parent over the same scored tokens; per-token arrays are (windows, tokens per window)."""

    rung: str
    parent: str
    n_ctx: int
    kl_divergence: np.ndarray  # KL(parent || rung) per scored token, nats
    rung_nll: np.ndarray  # -ln q(true next token), nats
    parent_nll: np.ndarray  # -ln p(true next token), nats
    same_top: np.ndarray  # bool: argmax of both distributions is the same token

    @property
    def n_windows(self) -> int:
        return int(self.kl_divergence.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.kl_divergence.size)

    def kl_divergence_mean(self) -> Interval:
        """Mean KL(parent || rung), nats per token."""
        return window_interval(self.kl_divergence)

    def same_top_share(self) -> Interval:
        """Share of tokens where rung and parent agree on the most likely next token."""
        return window_interval(self.same_top.astype(np.float64))

    def ppl(self) -> Interval:
        """The rung's perplexity, exp(mean NLL), with the interval of the mean NLL mapped through exp."""
        return _exp(window_interval(self.rung_nll))

    def parent_ppl(self) -> Interval:
        """The parent's perplexity on the same tokens."""
        return _exp(window_interval(self.parent_nll))

    def ln_ppl_ratio(self) -> Interval:
        """ln(PPL(rung) / PPL(parent)) = mean NLL difference, paired per token (llama.cpp reports it)."""
        return window_interval(self.rung_nll - self.parent_nll)

    def kl_divergence_quantiles(self) -> dict[str, float]:
        """Median, 99th percentile and maximum KL: the tail where a quantization breaks individual tokens."""
        flat = self.kl_divergence.ravel()
        return {"median": float(np.median(flat)), "p99": float(np.quantile(flat, 0.99)), "max": float(flat.max())}

    def summary(self) -> dict[str, object]:
        """Plain numbers for a JSON report."""
        out: dict[str, object] = {
            "rung": self.rung, "parent": self.parent, "n_ctx": self.n_ctx,
            "n_windows": self.n_windows, "n_tokens": self.n_tokens,
        }
        for name, value in (("kl_divergence_mean", self.kl_divergence_mean()),
                            ("same_top_share", self.same_top_share()), ("ppl", self.ppl()),
                            ("parent_ppl", self.parent_ppl()), ("ln_ppl_ratio", self.ln_ppl_ratio())):
            out[name] = value.mean
            out[f"{name}_ci95_low"] = value.ci95_low
            out[f"{name}_ci95_high"] = value.ci95_high
            out[f"{name}_se_per_token"] = value.se_per_token
        out.update({f"kl_divergence_{k}": v for k, v in self.kl_divergence_quantiles().items()})
        return out


def window_interval(values: np.ndarray) -> Interval:
    """Mean of (windows, tokens) values with a Student-t 95% interval over the per-window means.

    All windows score the same number of tokens, so the mean of window means is the token mean.
    One window gives a NaN interval, never a false zero width.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty (windows, tokens) array, got shape {values.shape}")
    per_window = values.mean(axis=1)
    mean = float(per_window.mean())
    n = len(per_window)
    flat = values.ravel()
    se_token = float(flat.std(ddof=1) / math.sqrt(flat.size)) if flat.size > 1 else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, se_token)
    half = float(t95(n)) * float(per_window.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, se_token)


def paired_difference(a: np.ndarray, b: np.ndarray) -> Interval:
    """Mean of a - b over the same tokens (e.g. two rungs' KL or NLL), paired per window."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"paired values need the same tokens: shapes {np.shape(a)} and {np.shape(b)}")
    return window_interval(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def item_difference(a: str, b: str) -> dict[str, float]:
    """Accuracy difference a - b over the same items ("1"/"0" per item, same order), paired: the normal interval
    of the per-item differences (McNemar's test in interval form), and how many items disagree."""
    x = np.frombuffer(a.encode(), dtype=np.uint8).astype(float) - np.frombuffer(b.encode(), dtype=np.uint8)
    mean = float(x.mean())
    half = Z95 * float(x.std(ddof=1)) / math.sqrt(len(x))
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half,
            "discordant": int((x != 0).sum()), "n": len(x)}


def _exp(interval: Interval) -> Interval:
    """Map a mean log-likelihood interval to perplexity (exp is monotonic; the se by the delta method)."""
    ppl = math.exp(interval.mean)
    return Interval(ppl, math.exp(interval.ci95_low), math.exp(interval.ci95_high), ppl * interval.se_per_token)


def wikitext2_text(path: Path = WIKITEXT2) -> str:
    """The shipped WikiText-2 test pages concatenated in file order (each page ends with its own newline)."""
    with Path(path).open(encoding="utf-8") as handle:
        return "".join(json.loads(line)["page"] for line in handle if line.strip())


def _log_softmax(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 log-softmax of a block of logit rows, and its softmax (one exp for both)."""
    shifted = rows.astype(np.float64)
    shifted -= shifted.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    total = probs.sum(axis=1, keepdims=True)
    probs /= total
    shifted -= np.log(total)
    return shifted, probs


def _score_window(parent_rows: np.ndarray, rung_rows: list[np.ndarray], targets: np.ndarray,
                  ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Parent NLL, and per rung (KL, NLL, same top) for one chunk of aligned logit rows."""
    n_rows = len(parent_rows)
    parent_nll = np.empty(n_rows)
    scores = [(np.empty(n_rows), np.empty(n_rows), np.empty(n_rows, dtype=bool)) for _ in rung_rows]
    parent_top = parent_rows.argmax(axis=1)
    for start in range(0, n_rows, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, n_rows)
        index = np.arange(stop - start)
        block_targets = targets[start:stop]
        log_p, p = _log_softmax(parent_rows[start:stop])
        parent_nll[start:stop] = -log_p[index, block_targets]
        for rows, (kl, nll, same) in zip(rung_rows, scores, strict=True):
            block = rows[start:stop]
            log_q, _ = _log_softmax(block)
            nll[start:stop] = -log_q[index, block_targets]
            same[start:stop] = block.argmax(axis=1) == parent_top[start:stop]
            np.subtract(log_p, log_q, out=log_q)
            kl[start:stop] = np.einsum("ij,ij->i", p, log_q)
    return parent_nll, scores


def divergence_from_parent(
    parent: Path,
    rungs: Sequence[Path],
    text: str,
    *,
    n_ctx: int = N_CTX,
    max_windows: int | None = None,
    n_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Divergence]:
    """KL(parent || rung), both NLLs and top-token agreement for every rung, on `text` tokenized by the parent.

    All models are loaded at once and decoded alternately per window, so the parent is decoded once
    however many rungs there are. The rungs must share the parent's vocabulary (re-quantizations of
    it do). `max_windows` takes the first windows of the stream (llama.cpp's `--chunks`); `progress`
    is called with (windows done, windows total) after each window.
    """
    if not rungs:
        raise QualityError("no rungs to compare with the parent")
    if n_ctx < 4 or n_ctx % 2:
        raise QualityError(f"n_ctx must be an even number of at least 4 tokens, got {n_ctx}")
    # One chunk per window (n_batch = n_ctx): parent and rung rows arrive in lockstep.
    # n_ubatch = n_ctx: every model decodes the same windows split the same way, so the batch invariance
    # multiple choice needs (N_UBATCH) buys nothing here and would cost ~6x in prefill.
    def load(path: Path) -> LlamaCppLM:
        return LlamaCppLM(path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_seq_max=1, n_threads=n_threads)

    parent_lm = load(parent)
    rung_lms = [load(path) for path in rungs]
    for path, lm in zip(rungs, rung_lms, strict=True):
        if lm.n_vocab != parent_lm.n_vocab:
            raise QualityError(f"{path} has a vocabulary of {lm.n_vocab}, the parent {parent_lm.n_vocab}")
    tokens = parent_lm.tok_encode(text, add_special=False)
    n_windows = len(tokens) // n_ctx
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    if n_windows < 1:
        raise QualityError(f"{len(tokens)} tokens do not fill one window of {n_ctx}")
    first = n_ctx // 2  # rows first .. n_ctx-2 predict tokens first+1 .. n_ctx-1
    n_scored = n_ctx - 1 - first
    parent_nll = np.empty((n_windows, n_scored))
    per_rung = [(np.empty((n_windows, n_scored)), np.empty((n_windows, n_scored)),
                 np.empty((n_windows, n_scored), dtype=bool)) for _ in rungs]
    for w in range(n_windows):
        window = list(tokens[w * n_ctx : (w + 1) * n_ctx])
        window[0] = parent_lm.prefix_token_id  # as llama.cpp: every window starts from BOS
        targets = np.asarray(window[first + 1 :], dtype=np.int64)
        wanted = range(first, n_ctx - 1)
        streams = [lm.window_logits(window[: n_ctx - 1], first_row=wanted.start) for lm in [parent_lm, *rung_lms]]
        done = 0
        for chunks in zip(*streams, strict=True):
            rows = len(chunks[0])
            if any(len(chunk) != rows for chunk in chunks):
                raise QualityError("parent and rung returned different numbers of logit rows")
            nll, scores = _score_window(chunks[0], list(chunks[1:]), targets[done : done + rows])
            parent_nll[w, done : done + rows] = nll
            for (kl, rung_nll, same), (kl_w, nll_w, same_w) in zip(per_rung, scores, strict=True):
                kl[w, done : done + rows] = kl_w
                rung_nll[w, done : done + rows] = nll_w
                same[w, done : done + rows] = same_w
            done += rows
        if done != n_scored:
            raise QualityError(f"window {w}: {done} logit rows scored, expected {n_scored}")
        if progress is not None:
            progress(w + 1, n_windows)
    return [
        Divergence(rung=str(path), parent=str(parent), n_ctx=n_ctx, kl_divergence=kl, rung_nll=nll,
                   parent_nll=parent_nll, same_top=same)
        for path, (kl, nll, same) in zip(rungs, per_rung, strict=True)
    ]


def kl_divergence(parent: Path, rung: Path, text: str, *, n_ctx: int = N_CTX, max_windows: int | None = None,
                  n_threads: int | None = None) -> Divergence:
    """KL(parent || rung) and perplexities of one rung (see `divergence_from_parent`)."""
    return divergence_from_parent(parent, [rung], text, n_ctx=n_ctx, max_windows=max_windows,
                                  n_threads=n_threads)[0]
