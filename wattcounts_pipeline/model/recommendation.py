"""Recommendations: the Pareto front and the most energy-efficient configuration that meets a scenario's needs.

Every candidate (architecture × weight format × framework × engine mode × GPU count) is predicted on the chosen
device at the scenario's load; candidates that do not fit in memory are dropped, the rest are checked against the
latency SLO and minimum quality (on point predictions), and the front is taken over energy per token, cost per
1M tokens, request latency and quality. Anything the training data did not cover is said in `warnings`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wattcounts_pipeline.model.catalog import get_architecture, get_hardware
from wattcounts_pipeline.model.costs import Costs, resolve_costs
from wattcounts_pipeline.model.errors import ModelError
from wattcounts_pipeline.model.features import build_features
from wattcounts_pipeline.model.known_quality import QUALITY_SOURCES, apply_known_quality
from wattcounts_pipeline.model.predictor import Predictor, interval_scale

logger = logging.getLogger(__name__)

MAX_BATCH = 1024
LITTLE_ITERATIONS = 6


@dataclass(frozen=True)
class Scenario:
    """A serving situation: prompt and answer lengths, load (fixed concurrency or a request rate), needs."""

    name: str
    input_tokens: int
    output_tokens: int
    concurrency: int | None = None
    request_rate_per_s: float | None = None
    tpot_slo_s: float | None = None
    ttft_slo_s: float | None = None
    min_quality: float | None = None

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.request_rate_per_s is None):
            raise ModelError(f"scenario {self.name!r}: give exactly one of concurrency or request_rate_per_s")
        if self.input_tokens < 0 or self.output_tokens < 1:
            raise ModelError(f"scenario {self.name!r}: needs input_tokens >= 0 and output_tokens >= 1")
        if (self.concurrency or 1) < 1 or (self.request_rate_per_s or 1) <= 0:
            raise ModelError(f"scenario {self.name!r}: concurrency must be >= 1 and request rate > 0")


# Each built-in scenario asks for a minimum quality too, or the smallest model always wins on energy: a mean
# accuracy over the tasks behind each value (published and derived values: MMLU 5-shot, ARC-Challenge 25-shot,
# HellaSwag 10-shot, GSM8K), 0.6 being about a 3B-class model of 2024 (Llama-3.2-3B 0.66, Qwen2.5-1.5B 0.61,
# Qwen2.5-0.5B 0.45 in reference/published_scores.yaml). `--min-quality 0` drops it; where no candidate has a
# quality it is said and not enforced.
SCENARIOS = {
    "chat": Scenario("chat", input_tokens=512, output_tokens=256, concurrency=8, tpot_slo_s=0.1, ttft_slo_s=1.0,
                     min_quality=0.6),
    "batch-summarization": Scenario("batch-summarization", input_tokens=2048, output_tokens=256, concurrency=64,
                                    min_quality=0.5),
    "rag": Scenario("rag", input_tokens=4096, output_tokens=256, request_rate_per_s=2.0, tpot_slo_s=0.1,
                    ttft_slo_s=2.0, min_quality=0.6),
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ModelError(f"unknown scenario {name!r}; built in: {', '.join(SCENARIOS)}") from None


BEST_BY = {"energy": "energy_per_token_j", "cost": "cost_per_1m_tokens", "co2": "co2_per_1m_tokens_g"}
"""What "best" minimises among the candidates that meet the needs (the front is the same whichever)."""


@dataclass(frozen=True)
class Candidate:
    """One way to serve: `architecture` is a catalog name (or any model name the catalog recognises)."""

    architecture: str
    quantization: str
    framework: str
    mode: str = "eager"
    gpu_count: int = 1


@dataclass
class Recommendation:
    """The front (Pareto-optimal feasible candidates, by energy), the best by energy, and what to be wary of."""

    hardware: str
    scenario: Scenario
    front: pd.DataFrame
    best: pd.Series | None
    warnings: list[str] = field(default_factory=list)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    costs: Costs = field(default_factory=Costs)
    best_by: str = "energy"

    def unmet_needs(self) -> str:
        """Why there is no best: how many candidates meet each need, and the one that comes closest (the smallest
        worst excess over a limit, as a fraction of that limit). Empty when there is a best."""
        if self.best is not None or self.candidates.empty:
            return ""
        table, s = self.candidates, self.scenario
        limits = {"TPOT": ("tpot_p50_s", s.tpot_slo_s, 1.0), "TTFT": ("ttft_p50_s", s.ttft_slo_s, 1.0),
                  "quality": ("quality_acc_mean", s.min_quality, -1.0)}  # -1: a minimum, not a maximum
        excess = pd.DataFrame(index=table.index)
        counts = []
        for name, (column, limit, sign) in limits.items():
            if limit is None or column not in table or table[column].isna().all():
                continue  # not asked, or no candidate has a value (no trusted quality): not a need that can fail
            excess[name] = (sign * (table[column] - limit) / limit).fillna(math.inf).clip(lower=0.0)
            counts.append(f"{int((excess[name] == 0).sum())} meet {name} {'≥' if sign < 0 else '≤'} {limit:g}"
                          + (" s" if sign > 0 else ""))
        if excess.empty:
            return "no candidate fits on the hardware"
        near = table.loc[excess.max(axis=1).idxmin()]
        values = ", ".join(f"{name} {near[limits[name][0]]:.3g}" + (" s" if limits[name][2] > 0 else "")
                           for name in excess.columns)
        return (f"no candidate meets every need ({len(table)} candidates: {'; '.join(counts)}); closest: "
                f"{near['architecture']} {near['quantization']} on {near['framework']} ({near['mode']}), "
                f"batch {near['batch_size']}: {values}")


# (quantization, framework) whose rows train the model but which is no setup to recommend: transformers `FP8` is
# this project's own FP8 path, retired as research (README, "The compiled pair"); torchao's float8 is the FP8
# transformers users run (vLLM's `FP8` is its own engine and stays).
RETIRED_SETUPS = frozenset({("FP8", "transformers")})


def default_candidates(predictor: Predictor, on_gpu: bool) -> list[Candidate]:
    """Every measured architecture (test models aside) × every setup (quantization, framework, mode, GPU
    count) measured on the same kind of device: a CPU-only setup is no candidate for a GPU, and back. Retired
    setups are no candidates."""
    usable = {s for s in predictor.domain.setups if (s[0], s[1]) not in RETIRED_SETUPS}
    same_kind = {s for s in usable if (s[3] > 0) == on_gpu}
    setups = same_kind or {(q, f, m, max(g, 1) if on_gpu else 0) for q, f, m, g in usable}
    archs = [a for a in predictor.domain.architectures if not get_architecture(a).test_only]
    return [Candidate(a, q, f, m, g) for a in archs for q, f, m, g in sorted(setups)]


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Rows of `values` (all objectives minimised) that no other row dominates (≤ everywhere, < somewhere)."""
    keep = np.ones(len(values), dtype=bool)
    for i, row in enumerate(values):
        dominated_by = np.all(values <= row, axis=1) & np.any(values < row, axis=1)
        keep[i] = not dominated_by.any()
    return keep


def _predict_at_load(predictor: Predictor, base: pd.DataFrame, scenario: Scenario
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and predictions at the scenario's batch size; for a request rate, batch = rate × latency
    (Little's law), iterated from batch 1 until it settles."""
    batch = np.full(len(base), scenario.concurrency or 1, dtype=np.int64)
    for _ in range(1 if scenario.concurrency else LITTLE_ITERATIONS):
        feats = build_features(base.assign(batch_size=batch))
        preds = predictor.predict_features(feats)
        if scenario.concurrency:
            break
        latency_s = _latency_s(preds, feats, scenario).fillna(1.0).to_numpy()
        new_batch = np.clip(np.ceil(scenario.request_rate_per_s * latency_s), 1, MAX_BATCH).astype(np.int64)
        if np.array_equal(new_batch, batch):
            break
        batch = new_batch
    return feats, preds


def _latency_s(preds: pd.DataFrame, feats: pd.DataFrame, scenario: Scenario) -> pd.Series:
    """Request latency: time to first token plus one decode step per further token."""
    tpot = preds["tpot_p50_s"].fillna(feats["batch_size"] / preds["tokens_per_s"])
    return preds["ttft_p50_s"] + (scenario.output_tokens - 1) * tpot


def _check_needs(table: pd.DataFrame, scenario: Scenario, trusted: tuple[str, ...], warnings: list[str]
                 ) -> pd.DataFrame:
    """`meets_slo` and `meets_quality` columns, on point predictions; a candidate with no quality from a trusted
    source cannot meet a minimum quality."""
    table["meets_slo"] = True
    if scenario.tpot_slo_s is not None:
        table["meets_slo"] &= table["tpot_p50_s"] <= scenario.tpot_slo_s
    if scenario.ttft_slo_s is not None:
        table["meets_slo"] &= table["ttft_p50_s"] <= scenario.ttft_slo_s
    table["meets_quality"] = True
    unknown = int(table["quality_acc_mean"].isna().sum())
    if unknown == len(table):
        unenforced = f" and min quality {scenario.min_quality} is not enforced" if scenario.min_quality else ""
        warnings.append(f"no candidate has a quality from the trusted sources ({', '.join(trusted)}): quality is "
                        f"left out of the front{unenforced}")
    elif scenario.min_quality is not None:
        table["meets_quality"] = table["quality_acc_mean"] >= scenario.min_quality  # NaN: not met
        if unknown:
            warnings.append(f"{unknown} of {len(table)} candidate(s) have no quality from the trusted sources "
                            f"({', '.join(trusted)}) and cannot meet min quality {scenario.min_quality}")
    return table


def _front_and_best(table: pd.DataFrame, scenario: Scenario, warnings: list[str], best_by: str
                    ) -> tuple[pd.DataFrame, pd.Series | None]:
    """Pareto front of the candidates meeting the needs (of all, with a warning, when none does) and the best."""
    objectives = {"energy_per_token_j": 1.0, "cost_per_1m_tokens": 1.0, "latency_s": 1.0}
    if table["quality_acc_mean"].notna().any():
        objectives["quality_acc_mean"] = -1.0
    feasible = table[table["meets_slo"] & table["meets_quality"]]
    pool = feasible
    if feasible.empty:
        warnings.append(f"no candidate meets the scenario's SLO (TPOT {scenario.tpot_slo_s} s, TTFT "
                        f"{scenario.ttft_slo_s} s) and min quality {scenario.min_quality}; the front shows all "
                        "candidates that fit, and there is no best")
        pool = table
    values = pool[list(objectives)].to_numpy(float) * np.asarray(list(objectives.values()))
    values = np.where(np.isnan(values), math.inf, values)
    front = pool[pareto_mask(values)].sort_values([BEST_BY[best_by], "energy_per_token_j"]).reset_index(drop=True)
    best = front.iloc[0] if not feasible.empty else None
    return front, best


def recommend(predictor: Predictor, hardware: str, scenario: Scenario | str,
              candidates: list[Candidate] | None = None, costs: Costs | None = None,
              quality_sources: tuple[str, ...] = QUALITY_SOURCES, best_by: str = "energy") -> Recommendation:
    """Pareto front and best configuration for `scenario` on `hardware` (a catalog name; unknown names raise).

    `candidates` default to every measured architecture × measured setup; the best is the lowest predicted
    energy per token (or total cost, or CO2: `best_by`) among candidates meeting the scenario's latency SLO and
    minimum quality. `costs` default to the catalog's GPU-hour price for the hardware and electricity in USD
    (model/costs.py). A candidate's quality is the release's for its setup (measured, published or derived:
    `Predictor.known_quality`), else the quality model's (`predicted`); `quality_sources` are the ones the user
    trusts, the rest count as unknown.
    """
    if best_by not in BEST_BY:
        raise ModelError(f"best by {best_by!r}: choose from {', '.join(BEST_BY)}")
    unknown_sources = sorted(set(quality_sources) - set(QUALITY_SOURCES))
    if unknown_sources or not quality_sources:
        raise ModelError(f"quality sources {unknown_sources or '(none)'}: choose from {', '.join(QUALITY_SOURCES)}")
    hw = get_hardware(hardware)
    costs = resolve_costs(hw.key, hw.is_gpu) if costs is None else costs
    scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
    if "energy_per_token_j" not in predictor.models:
        raise ModelError(f"predictor {predictor.release_tag!r} has no energy model (no measured energy rows)")
    candidates = default_candidates(predictor, hw.is_gpu) if candidates is None else candidates
    if not candidates:
        raise ModelError("no candidates to compare")
    base = pd.DataFrame([{"model": c.architecture, "quantization": c.quantization, "dtype": "",
                          "framework": c.framework, "mode": c.mode, "gpu_count": c.gpu_count if hw.is_gpu else 0,
                          "hardware": hw.key, "input_tokens": float(scenario.input_tokens),
                          "output_tokens": float(scenario.output_tokens)} for c in candidates])
    feats, preds = _predict_at_load(predictor, base, scenario)
    fits = (~(feats["memory_needed_gb"] > feats["memory_available_gb"])).to_numpy()
    warnings = predictor.domain.warnings(feats[fits] if fits.any() else feats)
    if not fits.all():
        warnings.append(f"{int((~fits).sum())} of {len(fits)} candidate(s) left out: weights + KV cache exceed "
                        f"{hw.key} memory")

    table = pd.concat([feats[["arch_key", "quant_key", "framework", "mode", "gpu_count", "batch_size"]]
                       .rename(columns={"arch_key": "architecture", "quant_key": "quantization"}), preds], axis=1)
    table["latency_s"] = _latency_s(preds, feats, scenario)
    table["extrapolation"] = predictor.domain.extrapolations(feats)
    table["interval_widening"] = interval_scale(predictor.domain.distance_parts(feats),  # 1: inside what was measured
                                                predictor.models["energy_per_token_j"].widening)
    table = costs.add_columns(table)
    table = apply_known_quality(table, predictor.known_quality, tuple(quality_sources))
    table = _check_needs(table[fits].reset_index(drop=True), scenario, tuple(quality_sources), warnings)
    front, best = _front_and_best(table, scenario, warnings, best_by)
    for message in warnings:
        logger.info("recommend %s on %s: %s", scenario.name, hw.key, message)
    return Recommendation(hardware=hw.key, scenario=scenario, front=front, best=best, warnings=warnings,
                          candidates=table, costs=costs, best_by=best_by)
