"""How the predictor does on what it was not trained on: held-out architectures, the largest models, frameworks,
weight formats, hosts and devices, with 80% interval coverage beside each figure.

    python benchmarks/predictor_extrapolation.py [RELEASE_DIR] [--jobs 2] [--out benchmarks/results]

Without RELEASE_DIR it builds the release of every configuration recorded under data/measurements/ the way
the pipeline does (benchmarks/recorded_release.py, with published and derived quality). Host of each row: the
measurement folder that holds most of its runs (model/hosts.py says why that is the proxy). Writes
predictor_extrapolation.json (every table) and predictor_extrapolation.md (the tables a reader needs) to --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from recorded_release import ROOT, release_from_folders

from wattcounts_pipeline.model.crossval import fold_predictions, held_out_folds, summarize
from wattcounts_pipeline.model.hosts import HOST_SOURCE, attach_hosts, folder_hosts
from wattcounts_pipeline.model.predictor import DEFAULT_COVERAGE, training_table

HEADLINE = "energy_per_token_j"
ACCEPTANCE_MAPE_MAX = 15.0  # issue #25: gross J/token MAPE at most this (%) ...
ACCEPTANCE_COVERAGE = (0.75, 0.85)  # ... with the 80% intervals covering this share of held-out values ...
ACCEPTANCE_GROUPINGS = ("largest", "architecture")  # ... in each of these splits


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {len(os.sched_getaffinity(0))} CPUs usable, {platform.platform()}"


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                         text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "wattcounts_pipeline/model"],
                           check=False, capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" + uncommitted changes in wattcounts_pipeline/model" if dirty else "")


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame[columns].itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def _largest_values(predictions: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Each held-out value of the `largest` split beside its prediction and interval: where the split's error and
    coverage come from, one row per configuration."""
    held = predictions[(predictions["grouping"] == "largest") & (predictions["target"] == HEADLINE)
                       & (predictions["model"] == "model")]
    setup = rows.reset_index(drop=True)[["quantization", "workload", "batch_size", "gpu_name"]]
    held = held.join(setup, on="row")
    return pd.DataFrame({
        "architecture": held["arch_key"], "framework": held["framework"], "mode": held["mode"],
        "format": held["quantization"], "workload": held["workload"], "batch": held["batch_size"],
        "card": held["gpu_name"],
        "measured": held["y"].round(3), "predicted": held["point"].round(3),
        "low": held["low"].round(3), "high": held["high"].round(3),
        "error %": ((held["point"] / held["y"] - 1) * 100).round(1),
        "inside": (held["low"] <= held["y"]) & (held["y"] <= held["high"]),
    }).sort_values(["framework", "architecture", "mode", "format", "workload", "batch"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("release", type=Path, nargs="?", help="dataset release folder (default: build from data/)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel folds")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    started = time.perf_counter()
    # configuration sweeps only: a folder without runs.parquet (a serving sweep) measured no configuration
    folders = sorted(p for p in (REPO / ROOT).iterdir() if (p / "runs.parquet").is_file())
    with tempfile.TemporaryDirectory() as tmp:
        release = args.release or release_from_folders(folders, Path(tmp), quality=True)[0]
        configurations = pd.read_parquet(release / "data" / "configurations.parquet")
    rows, feats, skipped = training_table(configurations)
    feats = attach_hosts(rows, feats, folder_hosts(folders))
    folds, notes = held_out_folds(feats)
    predictions = fold_predictions(rows, feats, folds, DEFAULT_COVERAGE, n_jobs=args.jobs)
    context = feats.reset_index(drop=True)[["arch_key", "framework", "mode", "quant_key", "host_key"]]
    predictions = predictions.join(context, on="row")
    overall = summarize(predictions)
    by = {name: summarize(predictions, (column,))
          for name, column in (("framework", "framework"), ("host", "host_key"), ("architecture", "arch_key"))}
    wall_s = time.perf_counter() - started

    head = overall[overall["target"] == HEADLINE].pivot_table(
        index=["grouping", "n_groups"], columns="model", values=["mape", "median_ape", "coverage"], sort=False)
    verdict = []
    for grouping in ACCEPTANCE_GROUPINGS:
        row = overall[(overall["grouping"] == grouping) & (overall["target"] == HEADLINE)
                      & (overall["model"] == "model")].iloc[0]
        ok = row["mape"] <= ACCEPTANCE_MAPE_MAX and ACCEPTANCE_COVERAGE[0] <= row["coverage"] <= ACCEPTANCE_COVERAGE[1]
        verdict.append({"grouping": grouping, "mape": row["mape"], "coverage": row["coverage"], "met": bool(ok)})
    meta = {"configurations": len(rows), "left_out": len(skipped), "hosts": int(feats["host_key"].nunique()),
            "host_source": HOST_SOURCE, "coverage_nominal": DEFAULT_COVERAGE, "wall_s": round(wall_s, 1),
            "machine": _machine(), "commit": _commit(), "release": str(args.release or f"built from {ROOT}"),
            "acceptance": {"gross J/token MAPE max %": ACCEPTANCE_MAPE_MAX,
                           "coverage range": list(ACCEPTANCE_COVERAGE)}, "verdict": verdict, "notes": notes}
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"meta": meta, "overall": overall.to_dict(orient="records"),
              **{f"by_{name}": table.to_dict(orient="records") for name, table in by.items()}}
    (args.out / "predictor_extrapolation.json").write_text(json.dumps(record, indent=1, default=float) + "\n")

    model = {name: t[(t["target"] == HEADLINE) & (t["model"] == "model")] for name, t in by.items()}
    largest = _largest_values(predictions, rows)
    cols = ["grouping", "mape", "median_ape", "coverage", "n_rows"]
    md = [f"# Predictor outside its training data ({meta['configurations']} configurations)", "",
          f"`benchmarks/predictor_extrapolation.py`, {meta['machine']}, {wall_s:.0f} s, commit {meta['commit']}.",
          (f"Release: {meta['release']}. Hosts: {meta['hosts']} ({HOST_SOURCE}). Intervals nominal "
           f"{DEFAULT_COVERAGE:.0%}. MAPE and median APE in %, coverage = share of held-out values inside the "
           "interval."),
          "", "## Gross J/token, every split (model, calibrated roofline, nearest measured configuration)", "",
          _table(head.reset_index().set_axis([" ".join(c).strip() if isinstance(c, tuple) else c
                                               for c in head.reset_index().columns], axis=1),
                 [" ".join(c).strip() if isinstance(c, tuple) else c for c in head.reset_index().columns]),
          "", "## Acceptance (issue #25): gross J/token MAPE ≤ 15%, coverage 0.75–0.85", "",
          *(f"- {v['grouping']}: MAPE {v['mape']:.1f}%, coverage {v['coverage']:.3f}: "
            f"{'met' if v['met'] else 'NOT met'}" for v in verdict),
          "", "## Every target, model only", "",
          _table(overall[overall["model"] == "model"], ["grouping", "target", "mape", "median_ape", "coverage",
                                                         "n_rows", "n_groups"]),
          "", "## Gross J/token per framework of the held-out row", "",
          _table(model["framework"], ["framework", *cols]),
          "", "## Gross J/token per held-out architecture", "",
          _table(model["architecture"][model["architecture"]["grouping"].isin(["architecture", "largest"])],
                 ["arch_key", *cols]),
          "", "## The largest quarter held out: every value (gross J/token, model)", "",
          _table(largest, list(largest.columns)),
          "", "## Gross J/token per host (leave-one-host-out and leave-one-architecture-out)", "",
          _table(model["host"][model["host"]["grouping"].isin(["host", "architecture"])]
                 .sort_values(["grouping", "host_key"]), ["host_key", *cols]),
          "", "Notes:", *(f"- {n}" for n in notes), ""]
    (args.out / "predictor_extrapolation.md").write_text("\n".join(md))
    print("\n".join(md[:md.index("## Every target, model only")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
