"""Run the serving sweeps of an experiment file for real and record their load points.

    python benchmarks/serving_sweep.py experiments/serving/cpu_chat.yaml [--out benchmarks/results]

Writes `<out>/serving_<experiment>_<host>.jsonl` (one load_points row per line, validated against
schemas/load_points.yaml) and a Markdown table beside it, and prints the table. The energy meter is the best this
machine has (NVML, RAPL, else the CPU-time estimate, which each row names in `energy_method`).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.meters.select import best_meter
from wattcounts_pipeline.serving.spec import load_serving
from wattcounts_pipeline.serving.sweep import level_text, run_sweep

COLUMNS = {"users": "users", "offered_rate_per_s": "offered req/s", "achieved_rate_per_s": "achieved req/s",
           "requests_completed": "requests", "duration_s": "window s", "mean_power_w": "mean W",
           "energy_per_request_j": "J/request", "energy_per_request_net_j": "J/request net",
           "energy_per_output_token_j": "J/out token", "energy_per_output_token_net_j": "J/out token net",
           "ttft_p50_s": "TTFT p50", "ttft_p90_s": "TTFT p90", "ttft_p99_s": "TTFT p99", "tpot_p50_s": "TPOT p50",
           "tpot_p90_s": "TPOT p90", "tpot_p99_s": "TPOT p99", "e2e_p90_s": "E2E p90",
           "slo_attainment": "SLO met", "goodput_per_s": "goodput req/s", "saturated": "saturated"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default=platform.node().split(".")[0] or "host", help="host tag in file names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    specs = load_serving(args.experiment)
    if not specs:
        print(f"{args.experiment}: no serving sweeps", file=sys.stderr)
        return 2
    meter = best_meter()
    rows, notes = [], []
    try:
        for spec in specs:
            t0 = time.perf_counter()
            result = run_sweep(spec, meter)
            rows += result.rows
            note = f"- `{spec.key}`: {len(result.rows)} point(s) in {time.perf_counter() - t0:.0f} s; {result.stop_reason}"
            if result.failure is not None:
                f = result.failure
                note += f"; FAILED at point {f.point_index} ({level_text(f.load_mode, f.level)}): " \
                        f"{f.error.splitlines()[0]}"
            notes.append(note)
    finally:
        meter.close()
    frame = pd.DataFrame(rows)
    checked = validate_table("load_points", frame, source=str(args.experiment))
    if not checked.ok:
        print(checked.quarantine[["row", "reason"]].to_string(), file=sys.stderr)
    name = f"serving_{specs[0].experiment}_{args.tag}"
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{name}.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(row, sort_keys=True, default=str) + "\n" for row in rows)
    first = frame.iloc[0] if not frame.empty else None
    header = [f"# Serving sweep: {args.experiment}", ""]
    if first is not None:
        header += [(f"Measured {first['started_at']} on {first['hardware_id']}, energy_method `{first['energy_method']}`, "
                   f"{first['model']} {first['quantization']} on {first['server']} ({first['framework_version']}), "
                   f"workload `{first['workload']}` (mix {first['mix']}, mean prompt {first['input_tokens_mean']:.0f} "
                   f"tokens), idle {first['idle_power_w']:.3g} W; SLO TTFT ≤ {first['slo_ttft_s']} s, "
                   f"TPOT ≤ {first['slo_tpot_s']} s. Latencies in seconds."), ""]
    shown = frame[[c for c in COLUMNS if c in frame]].dropna(axis=1, how="all").rename(columns=COLUMNS) \
        if not frame.empty else frame  # users (closed loop) or offered rate (open loop), not both
    table = shown.to_markdown(index=False, floatfmt=".4g") if not frame.empty else "no load points"
    text = "\n".join([*header, table, "", *notes, ""])
    (args.out / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if checked.ok and rows else 1


if __name__ == "__main__":
    sys.exit(main())
