"""One fixed workload through every CPU framework, measured by the pipeline's own `measure_spec`.

Runs experiments/frameworks_cpu.yaml (Gemma 3 270M, 64 tokens in / 32 out, 8 requests, batch 1) under
`best_meter()` and writes a markdown table (framework, tokens/s, TTFT and TPOT p50/p90, J/token) with the
machine's description. A framework that cannot run here gets a row saying why instead of a number.

    WATTCOUNTS_VLLM_PYTHON=/path/to/vllm-venv/bin/python python benchmarks/frameworks_cpu.py \
        --out benchmarks/results/frameworks_cpu.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import WattCountsError
from wattcounts_pipeline.core.specs import load_experiment
from wattcounts_pipeline.measure.run import measure_spec
from wattcounts_pipeline.meters.estimate import cpu_model_name
from wattcounts_pipeline.meters.select import best_meter

logger = logging.getLogger("frameworks_cpu")

HEADER = ("| framework | quantization | tokens/s | TTFT p50 / p90 (ms) | TPOT p50 / p90 (ms) | J/token | "
          "energy method |\n|---|---|---|---|---|---|---|")


def _row(spec_framework: str, quantization: str, runs, requests) -> str:  # type: ignore[no-untyped-def]
    ttft = requests["ttft_s"].quantile([0.5, 0.9]) * 1e3
    tpot = requests["tpot_s"].dropna().quantile([0.5, 0.9]) * 1e3
    return (f"| {spec_framework} | {quantization} | {runs['tokens_per_s'].mean():.1f} | "
            f"{ttft.iloc[0]:.0f} / {ttft.iloc[1]:.0f} | {tpot.iloc[0]:.0f} / {tpot.iloc[1]:.0f} | "
            f"{runs['energy_per_token_j'].mean():.3f} | {runs['energy_method'].iloc[0]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(paths.EXPERIMENTS_DIR / "frameworks_cpu.yaml"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "frameworks_cpu.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    specs = load_experiment(args.experiment)
    w = specs[0].workload
    head = [
        "# Frameworks on CPU: one fixed workload",
        "",
        (f"Recorded {dt.date.today().isoformat()} by `benchmarks/frameworks_cpu.py` on {cpu_model_name()} "
         f"({os.cpu_count()} CPUs), {platform.system()} {platform.release()}, Python {platform.python_version()}."),
        (f"Workload: {specs[0].model.name}, {w.input_tokens} tokens in / {w.output_tokens} out, {w.num_requests} "
         f"requests, batch (concurrency) {w.batch_size}, {specs[0].repetitions} repetitions after "
         f"{specs[0].warmup_requests} warm-up request; means over repetitions, percentiles over all requests."),
        "",
        HEADER,
    ]
    rows: list[str] = []
    for spec in specs:
        meter = best_meter()
        try:
            result = measure_spec(spec, meter)
            rows.append(_row(spec.framework, spec.quantization, result.runs, result.requests))
        except WattCountsError as exc:
            logger.error("%s failed: %s", spec.key, exc)
            rows.append(f"| {spec.framework} | {spec.quantization} | failed: {str(exc).splitlines()[0][:160]} "
                        "| | | | |")
        finally:
            meter.close()
        print(rows[-1], flush=True)
        Path(args.out).write_text("\n".join([*head, *rows, ""]), encoding="utf-8")  # a cut-off run keeps its rows


if __name__ == "__main__":
    main()
