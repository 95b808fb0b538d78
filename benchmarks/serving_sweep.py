"""Run the serving sweeps of an experiment file for real and record their load points.

    python benchmarks/serving_sweep.py experiments/serving/cpu_chat.yaml [--out benchmarks/results]
        [--only q4_k_m,qwen] [--skip-done data/measurements]

Writes `<out>/serving_<experiment>_<host>.jsonl` (one load_points row per line, validated against
schemas/load_points.yaml) and a Markdown table beside it, both rewritten as each sweep ends (a run cut short keeps
the sweeps it finished; the points of the sweep it was in are under $WATTCOUNTS_HOME/serving/<sweep>/), and prints
the table. The energy meter is the best this machine has (NVML, RAPL, else the CPU-time estimate, which each row
names in `energy_method`). `--only` keeps the sweeps whose key contains any of its comma-separated parts (case
ignored; a key is model-framework-quantization-workload-mode-hash); `--skip-done DIR` skips the sweeps that have
rows in a `serving_*.jsonl` under DIR measured on this card model (or, without a GPU, this hardware), so calls
that are cut short resume; `--max-seconds` starts no sweep that the longest one so far says would not fit.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from wattcounts_pipeline.meters.estimate import hardware_id
from wattcounts_pipeline.meters.select import best_meter
from wattcounts_pipeline.serving.spec import ServingSpec, load_serving
from wattcounts_pipeline.serving.sweep import level_text, run_sweep

COLUMNS = {"users": "users", "offered_rate_per_s": "offered req/s", "achieved_rate_per_s": "achieved req/s",
           "requests_completed": "requests", "duration_s": "window s", "mean_power_w": "mean W",
           "energy_per_request_j": "J/request", "energy_per_request_net_j": "J/request net",
           "energy_per_output_token_j": "J/out token", "energy_per_output_token_net_j": "J/out token net",
           "ttft_p50_s": "TTFT p50", "ttft_p90_s": "TTFT p90", "ttft_p99_s": "TTFT p99", "tpot_p50_s": "TPOT p50",
           "tpot_p90_s": "TPOT p90", "tpot_p99_s": "TPOT p99", "e2e_p90_s": "E2E p90",
           "slo_attainment": "SLO met", "goodput_per_s": "goodput req/s", "saturated": "saturated"}


def select(specs: list[ServingSpec], only: str) -> list[ServingSpec]:
    """The sweeps whose key contains any comma-separated part of `only` (case ignored); all when it is empty."""
    parts = [p.strip().lower() for p in only.split(",") if p.strip()]
    return [s for s in specs if not parts or any(p in s.key.lower() for p in parts)]


def done_sweeps(folders: list[Path], gpu_name: str | None, cpu_host: str = "") -> set[str]:
    """Sweep ids with rows in a `serving_*.jsonl` under `folders` (written once a sweep has ended) measured on the
    card model `gpu_name`, or, without a GPU, on `cpu_host` (the rows' `hardware_id` of a GPU-less host)."""
    done: set[str] = set()
    for folder in folders:
        for path in sorted(folder.rglob("serving_*.jsonl")) if folder.is_dir() else []:
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: that sweep is not done
                if not isinstance(row, dict) or "sweep_id" not in row:
                    continue
                same = (row.get("gpu_name") == gpu_name if gpu_name
                        else not row.get("gpu_name") and row.get("hardware_id") == cpu_host)
                if same:
                    done.add(row["sweep_id"])
    return done


def write_results(out: Path, name: str, experiment: Path, rows: list[dict[str, Any]],
                  notes: list[str]) -> tuple[bool, str]:
    """Validate `rows`, write `<name>.jsonl` and `<name>.md` under `out` (replacing earlier ones), return
    (valid, Markdown text)."""
    frame = pd.DataFrame(rows)
    ok, unchecked = True, ""
    try:  # Pandera: a GPU host's system Python may lack it; the rows are validated again where they are ingested
        from wattcounts_pipeline.core.validation import validate_table
    except ImportError as exc:
        unchecked = f"Rows not validated on this host ({exc}); validate them where they are ingested."
    else:
        checked = validate_table("load_points", frame, source=str(experiment))
        ok = checked.ok
        if not ok:
            print(checked.quarantine[["row", "reason"]].to_string(), file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, sort_keys=True, default=str) + "\n" for row in rows)
    tmp.replace(out / f"{name}.jsonl")
    first = frame.iloc[0] if not frame.empty else None
    header = [f"# Serving sweep: {experiment}", ""]
    if first is not None:
        header += [(f"Measured {first['started_at']} on {first['hardware_id']}, energy_method `{first['energy_method']}`, "
                   f"{first['model']} {first['quantization']} on {first['server']} ({first['framework_version']}), "
                   f"workload `{first['workload']}` (mix {first['mix']}, mean prompt {first['input_tokens_mean']:.0f} "
                   f"tokens), idle {first['idle_power_w']:.3g} W; SLO TTFT ≤ {first['slo_ttft_s']} s, "
                   f"TPOT ≤ {first['slo_tpot_s']} s. Latencies in seconds."), ""]
    several = "sweep_id" in frame and frame["sweep_id"].nunique() > 1  # then each row names its model and format
    cols = (["model", "quantization"] if several else []) + list(COLUMNS)
    shown = frame[[c for c in cols if c in frame]].dropna(axis=1, how="all").rename(columns=COLUMNS) \
        if not frame.empty else frame  # users (closed loop) or offered rate (open loop), not both
    try:  # to_markdown needs tabulate, which a GPU host's system Python may lack
        table = shown.to_markdown(index=False, floatfmt=".4g") if not frame.empty else "no load points"
    except ImportError:
        table = "```\n" + shown.to_string(index=False, float_format="{:.4g}".format) + "\n```"
    text = "\n".join([*header, table, "", *notes, *([unchecked] if unchecked else []), ""])
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    return ok, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default=platform.node().split(".")[0] or "host", help="host tag in file names")
    parser.add_argument("--only", default="", help="run only sweeps whose key contains any of these "
                                                   "comma-separated parts (case ignored), e.g. q4_k_m or qwen,mistral")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="start no further sweep once the longest sweep so far would not fit in what is left "
                             "of this many seconds (0: no limit)")
    parser.add_argument("--skip-done", type=Path, action="append", default=[], metavar="DIR",
                        help="skip sweeps with rows in a serving_*.jsonl under DIR from this card model (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    specs = load_serving(args.experiment)
    if not specs:
        print(f"{args.experiment}: no serving sweeps", file=sys.stderr)
        return 2
    name = f"serving_{specs[0].experiment}_{args.tag}"
    chosen = select(specs, args.only)
    if not chosen:
        print(f"--only {args.only}: matches none of {[s.key for s in specs]}", file=sys.stderr)
        return 2
    meter = best_meter()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        gpu_name = meter.describe().get("gpu_name")
        done = done_sweeps(args.skip_done, gpu_name, hardware_id({})) if args.skip_done else set()  # {}: no GPU
        todo = [s for s in chosen if s.key not in done]
        for spec in chosen:
            if spec.key in done:
                notes.append(f"- `{spec.key}`: skipped, already measured on this card model (--skip-done)")
        if not todo:
            print("\n".join(notes) + "\nnothing left to measure")
            return 0
        start, longest = time.perf_counter(), 0.0
        for i, spec in enumerate(todo):
            t0 = time.perf_counter()
            if args.max_seconds and i and t0 - start + longest > args.max_seconds:
                notes += [f"- `{s.key}`: not started, the time budget (--max-seconds {args.max_seconds:g}) is spent"
                          for s in todo[i:]]
                break
            result = run_sweep(spec, meter)
            rows += result.rows
            note = f"- `{spec.key}`: {len(result.rows)} point(s) in {time.perf_counter() - t0:.0f} s; {result.stop_reason}"
            if result.failure is not None:
                f = result.failure
                note += f"; FAILED at point {f.point_index} ({level_text(f.load_mode, f.level)}): " \
                        f"{f.error.splitlines()[0]}"
            notes.append(note)
            longest = max(longest, time.perf_counter() - t0)
            write_results(args.out, name, args.experiment, rows, notes)  # what a later kill leaves
    finally:
        meter.close()
    ok, text = write_results(args.out, name, args.experiment, rows, notes)
    print(text)
    return 0 if ok and rows else 1


if __name__ == "__main__":
    sys.exit(main())
