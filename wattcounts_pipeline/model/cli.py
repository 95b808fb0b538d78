"""`wattcounts recommend`: the best configuration and Pareto front for a scenario on a device; `wattcounts train`:
the predictor it asks, fitted on a dataset release folder.

Measured load curves (model/curves.py) answer the setups that have one for the scenario on the device, at the
scenario's load or `--users`/`--rate`, and say where they extrapolate; the predictor answers the rest.
Exit codes: 0 a best configuration (measured or predicted), 1 none meets the scenario's needs (stderr names the
need that failed and the candidate that comes closest), 2 bad input (a flag's value, an unknown device or scenario, no predictor).
Imports stay inside `run` so that registering the subcommand costs nothing, and the predictor loads from JSON with
numpy and pandas only (no scikit-learn), which keeps a recommendation under two seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattcounts_pipeline.core.vocab import CARBON_G_PER_KWH, ELECTRICITY_USD_PER_KWH, PREDICTORS_SUBDIR
from wattcounts_pipeline.core.vocab import RECOMMEND_QUALITY_SOURCES as QUALITY_SOURCES

if TYPE_CHECKING:
    import pandas as pd

    from wattcounts_pipeline.model.curves import CurveAnswer
    from wattcounts_pipeline.model.predictor import Predictor
    from wattcounts_pipeline.model.recommendation import Candidate, Recommendation, Scenario


def register(subparsers: argparse._SubParsersAction) -> None:
    trainer = subparsers.add_parser(
        "train", help="train a predictor on a dataset release folder",
        description="Fit the predictor on RELEASE/data/configurations.parquet of a dataset release (the folder the "
                    "pipeline writes under $WATTCOUNTS_HOME/releases/, or a downloaded copy) and store it as "
                    "MODEL_DIR/<release tag>/, where `wattcounts recommend` finds it. No cross-validation.")
    trainer.add_argument("release", type=Path, help="dataset release folder (holds release.json and data/)")
    trainer.add_argument("--model-dir", type=Path, default=None,
                         help=f"where predictors are stored (default: $WATTCOUNTS_HOME/{PREDICTORS_SUBDIR})")
    trainer.add_argument("--json", action="store_true", help="print the outcome as one JSON document")
    trainer.set_defaults(func=run_train)

    parser = subparsers.add_parser(
        "recommend", help="best configuration and Pareto front for a scenario on a device",
        description="Predict energy, cost, latency and quality of every measured setup on HARDWARE for a scenario; "
                    "print the Pareto front and the most energy-efficient setup within the scenario's SLO.")
    parser.add_argument("--hardware", required=True,
                        help="device name from the catalog, e.g. H100-SXM, L4, cpu-x86-server")
    parser.add_argument("--scenario", default="chat", help="built-in scenario: chat, batch-summarization, rag")
    load = parser.add_mutually_exclusive_group()  # model/curves.py: the load measured curves are read at
    load.add_argument("--users", type=_positive_int, default=None,
                      help="concurrent users (closed loop), instead of the scenario's load")
    load.add_argument("--rate", type=_positive, default=None,
                      help="requests per second (Poisson arrivals), instead of the scenario's load")
    parser.add_argument("--curves", type=Path, default=None,
                        help="measured load curves: a load_points .jsonl/.parquet or a folder of serving sweeps "
                             "(default $WATTCOUNTS_HOME/serving and the GPU sweeps shipped with the package); setups "
                             "with a curve for the scenario on HARDWARE "
                             "are answered from it, interpolated, the others by the predictor")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help=f"folder of predictor releases (default: $WATTCOUNTS_HOME/{PREDICTORS_SUBDIR})")
    parser.add_argument("--release", default=None, help="predictor release tag (default: the newest)")
    parser.add_argument("--min-quality", type=_fraction, default=None,
                        help="minimum mean accuracy (0-1; default: the scenario's, 0.6 for chat; 0: none)")
    parser.add_argument("--quality-source", type=_sources, default=QUALITY_SOURCES, metavar="SOURCES",
                        help="quality you trust, comma-separated from: " + ", ".join(QUALITY_SOURCES) +
                             " (default all; a candidate whose quality comes from another source counts as unknown)")
    parser.add_argument("--currency", default="USD",
                        help="currency of every price in and out: USD, EUR, ... (catalog/currencies.yaml, ECB rates)")
    parser.add_argument("--price", type=_non_negative, default=None,
                        help=f"electricity price per kWh in --currency (default {ELECTRICITY_USD_PER_KWH:g} USD, "
                             "converted)")
    parser.add_argument("--gpu-hour-price", type=_non_negative, default=None,
                        help="what one GPU-hour costs you in --currency (rental, or your amortized capital cost; 0 "
                             "to count electricity only); default: the catalog's on-demand list price for HARDWARE")
    parser.add_argument("--region", default=None,
                        help="grid for carbon: ISO 3166-1 alpha-3 country (FRA, USA, DEU, ...) or cloud region "
                             "(aws:us-east-1, ...), CodeCarbon's data (catalog/grid_intensity.yaml)")
    parser.add_argument("--carbon", type=_non_negative, default=None,
                        help=f"carbon intensity, gCO2e per kWh (overrides --region; default {CARBON_G_PER_KWH:g})")
    parser.add_argument("--best-by", choices=["energy", "cost", "co2"], default="energy",
                        help="what the best configuration minimises among those meeting the needs (default energy)")
    parser.add_argument("--plot", type=Path, default=None, help="also write the front as a PNG here")
    parser.add_argument("--json", action="store_true", help="print the recommendation as one JSON document")
    parser.set_defaults(func=run)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _fraction(text: str) -> float:
    """A mean accuracy: 0 to 1 (argparse names the flag and exits 2 otherwise)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and 1 (a mean accuracy)")
    return value


def _sources(text: str) -> tuple[str, ...]:
    """Quality sources, comma-separated; an unknown one names the choices (argparse exits 2)."""
    chosen = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    wrong = [s for s in chosen if s not in QUALITY_SOURCES]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(f"{', '.join(wrong) or '(none)'}: choose from {', '.join(QUALITY_SOURCES)}")
    return chosen


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not > 0")
    return value


def _non_negative(text: str) -> float:
    """A price or a carbon intensity: a finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is negative")
    return value


def _describe(s: Scenario) -> str:
    load = f"concurrency {s.concurrency}" if s.concurrency else f"{s.request_rate_per_s:g} requests/s"
    needs = [f"TPOT ≤ {s.tpot_slo_s:g} s" if s.tpot_slo_s else "",
             f"TTFT ≤ {s.ttft_slo_s:g} s" if s.ttft_slo_s else "",
             f"quality ≥ {s.min_quality:g}" if s.min_quality is not None else ""]
    return f"{s.input_tokens} in / {s.output_tokens} out tokens, {load}; " + (
        ", ".join(n for n in needs if n) or "no SLO")


def _table(front: pd.DataFrame, currency: str) -> str:
    columns = {"architecture": "architecture", "quantization": "quant", "framework": "framework", "mode": "mode",
               "gpu_count": "gpus", "batch_size": "batch", "energy_per_token_j": "J/token",
               "energy_per_token_j_low": "J low", "energy_per_token_j_high": "J high",
               "cost_per_1m_tokens": f"{currency}/1M tok", "gpu_cost_per_1m_tokens": "of which GPU-h",
               "co2_per_1m_tokens_g": "gCO2/1M tok",
               "tokens_per_s": "tok/s", "ttft_p50_s": "TTFT s", "tpot_p50_s": "TPOT s", "latency_s": "latency s",
               "quality_acc_mean": "quality", "quality_source": "quality from"}
    shown = front[list(columns)].rename(columns=columns)
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from wattcounts_pipeline import paths
    from wattcounts_pipeline.core.errors import WattCountsError
    from wattcounts_pipeline.model.catalog import get_hardware
    from wattcounts_pipeline.model.costs import resolve_costs
    from wattcounts_pipeline.model.errors import ModelError
    from wattcounts_pipeline.model.recommendation import get_scenario, recommend
    from wattcounts_pipeline.model.registry import SHIPPED_DIR, list_releases, load

    try:
        model_dir = args.model_dir or paths.home() / PREDICTORS_SUBDIR
        shipped = args.model_dir is None and args.release is None and not list_releases(model_dir) \
            and bool(list_releases(SHIPPED_DIR))
        predictor = load(SHIPPED_DIR if shipped else model_dir, args.release)
        scenario = get_scenario(args.scenario)
        if args.min_quality == 0:  # "no minimum", also where nothing has a quality
            scenario = replace(scenario, min_quality=None)
        elif args.min_quality is not None:
            if not _has_quality(predictor, args.quality_source):
                raise ModelError(f"--min-quality {args.min_quality:g} cannot be enforced: predictor "
                                 f"{predictor.release_tag} knows no quality from {', '.join(args.quality_source)} "
                                 "(no configuration of its release has one, and it has no quality model)")
            scenario = replace(scenario, min_quality=args.min_quality)
        hw = get_hardware(args.hardware)
        if args.users is not None or args.rate is not None:
            scenario = replace(scenario, concurrency=args.users, request_rate_per_s=args.rate)
        measured = _measured(args, scenario, hw.key, predictor)
        costs = resolve_costs(hw.key, hw.is_gpu, currency=args.currency, electricity_per_kwh=args.price,
                              gpu_hour=args.gpu_hour_price, region=args.region, carbon_g_per_kwh=args.carbon)
        rec = recommend(predictor, hw.key, scenario, costs=costs, quality_sources=args.quality_source,
                        best_by=args.best_by, candidates=_unmeasured(predictor, hw.is_gpu, measured))
    except WattCountsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    curves_answer = any(a.meets_slo and a.meets_quality for a in measured)
    if args.json:
        print(json.dumps({**_document(rec, predictor.release_tag, args), "predictor_shipped": shipped,
                          "measured_curves": [a.to_dict() for a in measured],
                          "answer_source": "measured curves" if curves_answer else "predictor"},
                         default=str))
    else:
        if shipped:
            print(f"(no predictor in {model_dir}: using the one shipped with the package, trained on the GPU "
                  "configurations recorded in this repository (H200 and H100); `wattcounts train RELEASE_DIR` for "
                  "your own release)")
        if measured:
            from wattcounts_pipeline.model.curves import describe_answers

            print("\n".join(describe_answers(measured, _describe(scenario).split("; ")[0], scenario.min_quality)))
            print("\nFrom the predictor (setups without a measured curve):")
        _print(rec, predictor, args)
    if rec.best is None and not curves_answer:
        print(f"error: {rec.unmet_needs()}", file=sys.stderr)
        return 1
    return 0


def _measured(args: argparse.Namespace, scenario: Scenario, hardware_key: str, predictor: Predictor
              ) -> list[CurveAnswer]:
    """The measured load curves' answers for the scenario at its load (model/curves.py), each with its setup's known
    quality held to the scenario's floor, best first."""
    from wattcounts_pipeline.model.curves import measured_answers, with_quality

    answers = measured_answers(args.curves, scenario.name, hardware_key, scenario.concurrency,
                               scenario.request_rate_per_s, scenario.ttft_slo_s, scenario.tpot_slo_s)
    return with_quality(answers, predictor.known_quality, tuple(args.quality_source), scenario.min_quality)


def _unmeasured(predictor: Predictor, on_gpu: bool, measured: list[CurveAnswer]) -> list[Candidate] | None:
    """The predictor's candidates less the setups a measured curve answered (None: all of them)."""
    from wattcounts_pipeline.model.curves import measured_setups
    from wattcounts_pipeline.model.recommendation import default_candidates

    if not measured:
        return None
    done = measured_setups(measured)
    left = [c for c in default_candidates(predictor, on_gpu) if (c.architecture, c.quantization.upper(), c.framework)
            not in done]
    return left or None


def _has_quality(predictor: Predictor, sources: tuple[str, ...]) -> bool:
    """Whether any candidate can have a quality from `sources`: known for a setup, or predicted."""
    known = predictor.known_quality["quality_source"].isin(sources).any()
    return bool(known or ("predicted" in sources and "quality_acc_mean" in predictor.models))


def run_train(args: argparse.Namespace) -> int:
    import pandas as pd

    from wattcounts_pipeline import paths
    from wattcounts_pipeline.core.errors import WattCountsError
    from wattcounts_pipeline.model.registry import train

    release_json, table = args.release / "release.json", args.release / "data" / "configurations.parquet"
    try:
        tag = json.loads(release_json.read_text())["version"]
        configurations = pd.read_parquet(table)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args.release}: not a dataset release folder (needs release.json with a version and "
              f"data/configurations.parquet): {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        folder = train(configurations, tag, args.model_dir or paths.home() / PREDICTORS_SUBDIR)
    except WattCountsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps({"ok": True, "predictor": tag, "configurations": len(configurations), "folder": str(folder)}))
    else:
        print(f"predictor {tag} trained on {len(configurations)} configurations of {args.release}: {folder}")
    return 0


def _document(rec: Recommendation, release_tag: str, args: argparse.Namespace) -> dict[str, Any]:
    """What `--json` prints: the inputs, the best (null when no candidate meets the needs), the front, warnings."""
    def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return json.loads(frame.to_json(orient="records"))

    return {"hardware": rec.hardware, "scenario": asdict(rec.scenario), "predictor_release": release_tag,
            "costs": {**asdict(rec.costs), "sources": rec.costs.sources}, "best_by": rec.best_by,
            "best": rows(rec.best.to_frame().T)[0] if rec.best is not None else None,
            "unmet_needs": rec.unmet_needs() or None, "front": rows(rec.front), "warnings": rec.warnings}


def _quality(row: pd.Series) -> str:
    """The quality with its source and tasks: a derived value never reads as a measured one."""
    def missing(value: object) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    if missing(row["quality_acc_mean"]):
        return "quality unknown"
    bounds = "" if missing(row["quality_acc_mean_low"]) else \
        f" [{row['quality_acc_mean_low']:.3g}, {row['quality_acc_mean_high']:.3g}]"
    tasks = f" on {row['quality_tasks']}" if row.get("quality_tasks") else ""
    return f"quality {row['quality_acc_mean']:.3g}{bounds} ({row['quality_source']}{tasks})"


def _print(rec: Recommendation, predictor: Predictor, args: argparse.Namespace) -> None:
    scenario = rec.scenario
    print(f"Scenario {scenario.name} on {rec.hardware}: {_describe(scenario)}")
    c = rec.costs
    gpu_hour = "not counted" if c.gpu_hour is None else f"{c.gpu_hour:.4g} {c.currency}/GPU-hour"
    print(f"Predictor {predictor.release_tag} ({predictor.n_training_rows} training rows; intervals nominal "
          f"{predictor.coverage:.0%})")
    print(f"Costs in {c.currency}: electricity {c.electricity_per_kwh:.4g} {c.currency}/kWh "
          f"({c.sources.get('electricity', '')}); GPU {gpu_hour} ({c.sources.get('gpu_hour', '')}); "
          f"carbon {c.carbon_g_per_kwh:.4g} gCO2e/kWh ({c.sources.get('carbon', '')}); best by {rec.best_by}")
    print(f"\nPareto front over energy, cost, latency and quality ({len(rec.front)} of {len(rec.candidates)} "
          "candidates):")
    print(_table(rec.front, rec.costs.currency))
    if rec.best is None:
        print(f"\nBest: none — {rec.unmet_needs()}.")
    else:
        b = rec.best
        print(f"\nBest: {b['architecture']} {b['quantization']} on {b['framework']} ({b['mode']}, "
              f"{b['gpu_count']} GPU(s)), batch {b['batch_size']}: {b['energy_per_token_j']:.4g} J/token "
              f"[{b['energy_per_token_j_low']:.3g}, {b['energy_per_token_j_high']:.3g}], "
              f"{b['cost_per_1m_tokens']:.4g} {rec.costs.currency} ({b['gpu_cost_per_1m_tokens']:.4g} of it GPU-hours) "
              f"and {b['co2_per_1m_tokens_g']:.4g} gCO2e per 1M tokens, "
              f"TTFT {b['ttft_p50_s']:.3g} s, TPOT {b['tpot_p50_s']:.3g} s, {_quality(b)}")
    for message in rec.warnings:
        print(f"warning: {message}")
    for _, row in rec.front[rec.front["extrapolation"] != ""].iterrows():
        print(f"extrapolated: {row['architecture']} {row['quantization']} on {row['framework']} "
              f"({row['mode']}, {row['gpu_count']} GPU(s)): {row['extrapolation']}"
              + (f" (interval widened x{row['interval_widening']:.2g})" if row["interval_widening"] > 1 else ""))
    if args.plot is not None:
        from wattcounts_pipeline.model.plot import plot_front

        plot_front(rec, args.plot)
        print(f"front plotted to {args.plot}")
