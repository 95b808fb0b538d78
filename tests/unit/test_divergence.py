"""KL divergence of a quantized model from its parent, on real llama.cpp with tiny random-weight GGUFs.

The parent is a 2-layer random llama in F16 (backends/gguf_random.py); the rung is the same file
re-quantized to Q4_0 by llama.cpp's quantizer (backends/gguf_quant.py), as the ladder's rungs are.
The per-token values are checked against an independent reference: `Llama(logits_all=True)` and
scipy's entropy over the same window.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("lm_eval")
pytest.importorskip("gguf")

from wattcounts_pipeline.backends.gguf_quant import requantize
from wattcounts_pipeline.backends.gguf_random import write_random_gguf
from wattcounts_pipeline.core.errors import QualityError
from wattcounts_pipeline.quality.divergence import (
    divergence_from_parent,
    kl_divergence,
    paired_difference,
    wikitext2_text,
    window_interval,
)
from wattcounts_pipeline.quality.llamacpp_lm import model_params

N_CTX = 64
TEXT = wikitext2_text()[:600]  # byte-level tokens in the placeholder vocabulary: ~600 tokens, 9 windows


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny F16 parent and its llama.cpp Q4_0 re-quantization."""
    root = tmp_path_factory.mktemp("divergence")
    config = root / "tiny"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
    }))
    parent = write_random_gguf(config, "F16", root / "parent-F16.gguf")
    return parent, requantize(parent, "Q4_0", root)


def test_model_against_itself_is_zero(ladder: tuple[Path, Path]) -> None:
    parent, _ = ladder
    result = kl_divergence(parent, parent, TEXT, n_ctx=N_CTX, n_threads=1)
    assert result.n_windows >= 4
    assert result.kl_divergence.shape == (result.n_windows, N_CTX // 2 - 1)
    assert np.abs(result.kl_divergence).max() < 1e-9
    assert result.same_top_share().mean == 1.0
    assert result.ppl().mean == pytest.approx(result.parent_ppl().mean, rel=1e-12)
    assert result.ln_ppl_ratio().mean == pytest.approx(0.0, abs=1e-12)


def test_quantized_copy_diverges_and_matches_reference(
    ladder: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    parent, rung = ladder
    same, quantized = divergence_from_parent(parent, [parent, rung], TEXT, n_ctx=N_CTX, max_windows=3, n_threads=1)
    assert quantized.n_windows == 3
    np.testing.assert_array_equal(same.parent_nll, quantized.parent_nll)  # the parent was decoded once
    kl = quantized.kl_divergence_mean()
    assert kl.mean > 1e-6
    assert kl.ci95_low > 0  # every token of a window moves: beyond noise
    assert quantized.kl_divergence.min() > -1e-9  # KL is never negative beyond rounding
    assert paired_difference(quantized.kl_divergence, same.kl_divergence).excludes(0.0)

    # Independent reference for window 1: every position's full logits, BOS first, second half scored,
    # with the scorer's numeric settings (no repacked weights, flash attention, one physical batch).
    monkeypatch.setattr(llama_cpp.llama_cpp, "llama_model_default_params", model_params)
    tokens = llama_cpp.Llama(str(parent), n_ctx=N_CTX, vocab_only=True, verbose=False).tokenize(
        TEXT.encode(), add_bos=False)
    window = [1, *tokens[N_CTX + 1 : 2 * N_CTX]]
    first = N_CTX // 2
    log_probs = []
    for path in (parent, rung):
        llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, logits_all=True,
                               flash_attn=True, verbose=False)
        llm.eval(window[:-1])
        rows = np.asarray(llm.scores[first : N_CTX - 1], dtype=np.float64)
        log_probs.append(rows - np.logaddexp.reduce(rows, axis=1, keepdims=True))
        llm.close()
    log_p, log_q = log_probs
    reference_kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=1)
    targets = np.asarray(window[first + 1 :])
    np.testing.assert_allclose(quantized.kl_divergence[1], reference_kl, rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(quantized.rung_nll[1], -log_q[np.arange(len(targets)), targets], atol=1e-5)
    np.testing.assert_allclose(quantized.parent_nll[1], -log_p[np.arange(len(targets)), targets], atol=1e-5)


def test_window_interval_is_student_t_over_window_means() -> None:
    values = np.array([[1.0, 3.0], [2.0, 4.0], [6.0, 8.0]])  # window means 2, 3, 7
    interval = window_interval(values)
    assert interval.mean == pytest.approx(4.0)
    half = 4.302652729911275 * np.std([2.0, 3.0, 7.0], ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
    assert (interval.ci95_low, interval.ci95_high) == pytest.approx((4.0 - half, 4.0 + half))
    assert interval.se_per_token == pytest.approx(np.std(values, ddof=1) / math.sqrt(6))
    one = window_interval(values[:1])
    assert one.mean == 2.0
    assert math.isnan(one.ci95_low)
    assert math.isnan(one.ci95_high)
    with pytest.raises(ValueError, match="same tokens"):
        paired_difference(values, values[:2])


def test_too_little_text_is_an_error(ladder: tuple[Path, Path]) -> None:
    parent, rung = ladder
    with pytest.raises(QualityError, match="do not fill one window"):
        kl_divergence(parent, rung, "short", n_ctx=N_CTX, n_threads=1)
    with pytest.raises(QualityError, match="even number"):
        kl_divergence(parent, rung, TEXT, n_ctx=63, n_threads=1)
