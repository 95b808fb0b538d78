"""Quality with its provenance: our measured rows, published bf16 scores, and scores derived from both.

A configuration's quality is *measured* where we ran lm-eval on its weights and engine. Otherwise it can be
*published* (the authors' bf16 score, for bf16 weights) or *derived*: published bf16 score × the published
retention of the configuration's weight format (`reference/*.yaml`). A derived value's 95% interval widens with
every unknown: the retention's own uncertainty, the format having been studied on another model, the retention
not covering the score's task at its n-shot, a study made with an importance matrix where we quantize without.
An architecture with no authors' score takes another lab's bf16 score as a *stand-in*, itself derived: its interval
widens by the largest gap seen between two labs scoring one checkpoint (and between successive versions of one
model, where the lab did not say which version it ran). Nothing derived is ever labelled measured.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.stats import Z95

REFERENCE_DIR = Path(__file__).parent / "reference"
BF16_LABELS = frozenset({"BF16", "bfloat16"})  # the published scores' own format: nothing to derive
# A retention studied on another model says less about this one: its loss may be twice as large (or none).
TRANSFER_MIN_REL = 0.005  # floor of that term, for formats whose studied loss is ~0
SHOT_MISMATCH_REL = 0.005  # the retention did not measure this task at this n-shot (a token proxy never does)
OPENLLM_V1 = {("arc_challenge", 25), ("hellaswag", 10), ("mmlu", 5), ("gsm8k", 5)}  # behind every task_average
MC_TASKS = ("mmlu", "arc_challenge", "hellaswag")  # published tasks that are multiple-choice accuracy
PUBLISHED_TASK_VERSION = "as published"
PROVENANCE_KEY = ["model", "model_revision", "quantization", "framework", "task", "task_version", "num_fewshot",
                  "limit", "metric"]


@dataclass(frozen=True)
class Retention:
    format: str
    aliases: tuple[str, ...]
    studied_architecture: str
    kind: str  # task_average | token_proxy
    retention: float
    uncertainty: float  # relative half-width of the retention's 95% interval
    citation: str
    table: str
    imatrix_gap: float = 0.0  # relative loss an importance matrix saved in the study; we quantize without one
    # (task, n-shot) pairs behind a task_average; empty: OpenLLM v1 (every published card's average)
    studied_tasks: frozenset[tuple[str, int]] = frozenset()
    measured_here: bool = False  # measured by this project (its source says so), not published

    def covers(self, task: str, num_fewshot: int) -> bool:
        """Whether the study measured this task at this n-shot (a token proxy measures no task)."""
        if self.kind == "token_proxy":
            return False
        return (task, num_fewshot) in (self.studied_tasks or OPENLLM_V1)


@dataclass(frozen=True)
class BaseScore:
    """A bf16 score a derivation starts from: `row` is its quality row (published, or a derived stand-in with the
    binomial stderr kept for the derivation), `terms` the relative widening it carries into every derived value."""
    row: dict[str, Any]
    terms: dict[str, float]


@functools.cache
def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REFERENCE_DIR / name).read_text(encoding="utf-8"))


def _cite(sources: dict[str, Any], key: str, table: str) -> str:
    s = sources[key]
    return f"{s['citation']}; table: {table}; read {s['read_on']}"


def published_scores() -> pd.DataFrame:
    """`reference/published_scores.yaml` as quality rows (source = published, framework null)."""
    doc = _load("published_scores.yaml")
    rows = []
    for e in doc["scores"]:
        n = doc["test_set_size"].get(e["task"])
        stderr = math.sqrt(e["value"] * (1 - e["value"]) / n) if n else None
        rows.append({
            "model": e["architecture"], "model_revision": e["checkpoint"], "quantization": "BF16", "framework": None,
            "task": e["task"], "task_version": PUBLISHED_TASK_VERSION, "num_fewshot": e["num_fewshot"], "limit": None,
            "metric": e["metric"], "value": e["value"], "stderr": stderr, "n_samples": n, "lm_eval_version": None,
            "evaluated_at": None, "source": "published", "citation": _cite(doc["sources"], e["source"], e["table"]),
            "recipe": None,
            "value_ci95_low": None if stderr is None else max(0.0, e["value"] - Z95 * stderr),
            "value_ci95_high": None if stderr is None else min(1.0, e["value"] + Z95 * stderr),
        })
    return pd.DataFrame(rows)


def _gap(a: float, b: float) -> float:
    """Relative gap between two scores of one thing, against the smaller (the conservative side)."""
    return abs(a - b) / min(a, b)


@functools.cache
def widening(kind: str) -> dict[str, float]:
    """task → the largest relative gap among `lab_checks` (kind "lab") or `version_checks` (kind "version") of
    published_scores.yaml; "*" → the largest over all tasks, for a task with no check of that kind."""
    checks = _load("published_scores.yaml")[f"{kind}_checks"]
    gaps: dict[str, float] = {}
    for c in checks:
        gaps[c["task"]] = max(gaps.get(c["task"], 0.0), _gap(c["value_a"], c["value_b"]))
    return {**gaps, "*": max(gaps.values())}


def _widening_for(kind: str, task: str) -> float:
    gaps = widening(kind)
    return gaps.get(task, gaps["*"])


def stand_ins() -> list[BaseScore]:
    """Another lab's bf16 scores (`stand_ins` of published_scores.yaml) for architectures without an authors' score,
    each with its widening terms. An architecture with published scores never takes a stand-in."""
    doc = _load("published_scores.yaml")
    published = {e["architecture"] for e in doc["scores"]}
    evidence = sorted({c[f"source_{s}"] for k in ("lab_checks", "version_checks") for c in doc[k] for s in "ab"})
    out = []
    for e in doc.get("stand_ins", []):
        if e["architecture"] in published:
            continue
        n = doc["test_set_size"].get(e["task"])
        terms = {f"scored by {e['scored_by']}, not the authors": _widening_for("lab", e["task"])}
        if not e["version_stated"]:
            terms["checkpoint version not stated"] = _widening_for("version", e["task"])
        row = {"model": e["architecture"], "model_revision": e["checkpoint"], "quantization": "BF16", "framework": None,
               "task": e["task"], "task_version": PUBLISHED_TASK_VERSION, "num_fewshot": e["num_fewshot"],
               "limit": None, "metric": e["metric"], "value": e["value"],
               "stderr": math.sqrt(e["value"] * (1 - e["value"]) / n) if n else None, "n_samples": n,
               "lm_eval_version": None, "evaluated_at": None, "source": "derived", "scored_by": e["scored_by"],
               "citation": (f"{_cite(doc['sources'], e['source'], e['table'])}; interval widened from lab_checks "
                            f"and version_checks of wattcounts_pipeline/quality/reference/published_scores.yaml "
                            f"(sources: {', '.join(evidence)})")}
        out.append(BaseScore(row, terms))
    return out


def _interval(value: float, sampling_se: float, terms: dict[str, float]) -> tuple[float, float, str]:
    """95% bounds of `value` from its sampling standard error and relative terms (in quadrature), and their text."""
    relative = math.sqrt(sum(t * t for t in terms.values()))
    half = math.sqrt((value * relative) ** 2 + (Z95 * sampling_se) ** 2)
    text = ", ".join([f"sampling ±{Z95 * sampling_se:.3f}", *(f"{name} ±{t:.2%}" for name, t in terms.items())])
    return max(0.0, value - half), min(1.0, value + half), text


def stand_in_row(base: BaseScore) -> dict[str, Any]:
    """A stand-in as the release's bf16 quality row: derived, saying who scored it and what widened its interval."""
    s = base.row
    low, high, widened = _interval(s["value"], s["stderr"] or 0.0, base.terms)
    recipe = (f"{s['task']} {s['num_fewshot']}-shot {s['metric']} {s['value']:.3f} scored by {s['scored_by']} "
              f"({s['model_revision']}, BF16), standing in for an authors' score of {s['model']} that no checkable "
              f"copy holds; 95% interval: {widened}")
    return {**s, "stderr": None, "recipe": recipe, "value_ci95_low": low, "value_ci95_high": high}


def retentions() -> list[Retention]:
    doc = _load("quantization_retention.yaml")
    return [Retention(format=e["format"], aliases=tuple(e.get("aliases", ())),
                      studied_architecture=e["studied_architecture"], kind=e["kind"], retention=e["retention"],
                      uncertainty=e["uncertainty"], citation=_cite(doc["sources"], e["source"], e["table"]),
                      table=e["table"], imatrix_gap=e.get("imatrix_gap", 0.0),
                      studied_tasks=frozenset((t, int(n)) for t, n in e.get("studied_tasks", ())),
                      measured_here=bool(doc["sources"][e["source"]].get("measured_here", False)))
            for e in doc["retention"]]


def _family(architecture: str) -> str:
    """`llama-3.1-8b` → `llama-3.1`: the size is the last dash-separated part."""
    return architecture.rsplit("-", 1)[0]


def retention_for(quantization: str, architecture: str) -> Retention | None:
    """The closest study of this format: the same architecture, else the same family, else the first listed."""
    label = quantization.upper()
    candidates = [r for r in retentions() if label in {r.format.upper(), *(a.upper() for a in r.aliases)}]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (r.studied_architecture != architecture,
                                          _family(r.studied_architecture) != _family(architecture)))


def derive_row(score: dict[str, Any], quantization: str, framework: str, retention: Retention,
               base_terms: dict[str, float] | None = None) -> dict[str, Any]:
    """One bf16 score (published, or a stand-in with its `base_terms`) carried to `quantization` on `framework`,
    with its widened interval."""
    loss = abs(1 - retention.retention)
    terms = {**(base_terms or {}), "retention": retention.uncertainty}
    if retention.studied_architecture != score["model"]:
        terms[f"studied on {retention.studied_architecture}"] = max(loss, TRANSFER_MIN_REL)
    if not retention.covers(score["task"], score["num_fewshot"]):
        terms["task/n-shot not in the study"] = SHOT_MISMATCH_REL
    if retention.imatrix_gap:
        terms["studied with an importance matrix, quantized here without"] = retention.imatrix_gap
    value = score["value"] * retention.retention
    low, high, widened = _interval(value, (score["stderr"] or 0.0) * retention.retention, terms)
    basis = (f"stand-in scored by {score['scored_by']}, {score['model_revision']}, BF16" if score.get("scored_by")
             else f"published, {score['model_revision']}, BF16")
    recipe = (f"{score['task']} {score['num_fewshot']}-shot {score['metric']} {score['value']:.3f} ({basis}) × "
              f"{quantization} retention {retention.retention:.5f} ({retention.kind}, "
              f"{'measured by this project, ' if retention.measured_here else ''}{retention.table}); "
              f"95% interval: {widened}")
    return {**score, "quantization": quantization, "framework": framework, "source": "derived", "stderr": None,
            "citation": f"{score['citation']} | {retention.citation}", "recipe": recipe, "value": value,
            "value_ci95_low": low, "value_ci95_high": high}


def release_quality(measured: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The release's quality table: measured rows once each, the published scores, the stand-ins (derived bf16 rows
    of architectures without an authors' score), and a derived row per bf16 score for every (model, quantization,
    framework) the runs measured without a measured score (or with random weights, which a measured score never
    covers).

    Partitions that differ only in workload or batch size share one quality evaluation, so concatenated
    partitions repeat its rows: they are kept once (the latest evaluation of a key wins).
    """
    contract = load_contract("quality")
    measured = contract.conform(measured) if not measured.empty else contract.empty_frame()
    measured = (measured.sort_values("evaluated_at", kind="stable")
                .drop_duplicates(PROVENANCE_KEY, keep="last").sort_index())
    published = published_scores()
    stand = stand_ins()
    parts = [measured, contract.conform(published), contract.conform(pd.DataFrame([stand_in_row(b) for b in stand]))]
    bases = [BaseScore(s, {}) for s in published.to_dict("records")] + stand
    if not runs.empty:
        have = set(zip(measured["model"], measured["quantization"], measured["framework"], strict=True))
        derived = []
        combos = runs[["model", "quantization", "framework", "weights"]].drop_duplicates()
        wanted = {(m, q, f) for m, q, f, w in combos.itertuples(index=False)  # random weights are never measured
                  if (w == "random" or (m, q, f) not in have) and q not in BF16_LABELS}
        for model, quantization, framework in sorted(wanted):
            scores = [b for b in bases if b.row["model"] == model]
            retention = retention_for(quantization, model)
            if not scores or retention is None:
                continue
            derived += [derive_row(b.row, quantization, framework, retention, b.terms) for b in scores]
        if derived:
            parts.append(contract.conform(pd.DataFrame(derived)))
    return pd.concat([p for p in parts if not p.empty], ignore_index=True)  # published is never empty
