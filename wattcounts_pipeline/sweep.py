"""`python -m wattcounts_pipeline.sweep EXPERIMENT.yaml --out DIR`: measure many specs, resumably.

For GPU hosts reached without Dagster (a lent machine, a batch job): the same `measure_spec` as the
`measurements` asset, one spec after another, each finished spec appended to `DIR/*.jsonl` at once
(flushed), so a killed sweep loses at most the spec in progress and a rerun skips what is done.
A failing spec is recorded in `failures.jsonl` and the sweep goes on. Committed under
`data/measurements/<sweep>/`, the `measurements` asset serves such recorded rows for their partitions,
and they are validated like live ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.core.specs import ExperimentSpec, load_experiments
from wattcounts_pipeline.measure import measure_spec
from wattcounts_pipeline.meters.select import best_meter

logger = logging.getLogger(__name__)
TABLES = ("runs", "requests", "power_traces")


def done_keys(out: Path) -> set[str]:
    """Configuration ids already measured (present in runs.jsonl)."""
    path = out / "runs.jsonl"
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        try:
            keys.add(json.loads(line)["configuration_id"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by a kill mid-write
    return keys


def _append(path: Path, frame: pd.DataFrame) -> None:
    with path.open("a") as fh:
        for record in frame.to_dict(orient="records"):
            fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()


def run_sweep(specs: list[ExperimentSpec], out: Path, meter_name: str | None = None,
              max_seconds: float | None = None) -> dict[str, int]:
    """Measure every spec not yet in `out`; stop starting new ones after `max_seconds`."""
    out.mkdir(parents=True, exist_ok=True)
    done = done_keys(out)
    todo = [s for s in specs if s.key not in done]
    logger.info("sweep: %d specs, %d done, %d to go", len(specs), len(done), len(todo))
    meter = best_meter(meter_name)
    (out / "meter.json").write_text(json.dumps({"method": meter.method, **meter.describe()}, default=str))
    start = time.monotonic()
    counts = {"measured": 0, "failed": 0, "skipped": len(specs) - len(todo)}
    try:
        for i, spec in enumerate(todo, 1):
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                logger.info("sweep: time budget spent; %d specs left for the next call", len(todo) - i + 1)
                break
            logger.info("[%d/%d] %s", i, len(todo), spec.key)
            try:
                result = measure_spec(spec, meter)
            except Exception as exc:  # noqa: BLE001 - one broken configuration must not end the sweep
                counts["failed"] += 1
                _append(out / "failures.jsonl", pd.DataFrame([{
                    "configuration_id": spec.key, "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(limit=5), "spec": json.dumps(spec.to_dict(), default=str)}]))
                logger.error("%s failed: %s", spec.key, exc)
                continue
            _append(out / "requests.jsonl", result.requests)
            _append(out / "power_traces.jsonl", result.traces)
            _append(out / "specs.jsonl", pd.DataFrame([{"configuration_id": spec.key,
                                                        "spec": json.dumps(spec.to_dict(), default=str)}]))
            _append(out / "runs.jsonl", result.runs)  # last: its presence marks the spec done
            counts["measured"] += 1
            r = result.runs
            print(json.dumps({"configuration_id": spec.key, "tokens_per_s": round(float(r["tokens_per_s"].mean()), 2),
                              "energy_per_token_j": round(float(r["energy_per_token_j"].mean()), 5),
                              "method": r["energy_method"].iloc[0]}), flush=True)
    finally:
        meter.close()
    return counts


def _configuration_ids(frame: pd.DataFrame) -> pd.Series:
    """Each row's configuration id (power traces only carry run ids: '<configuration id>/r<n>')."""
    if "configuration_id" in frame:
        return frame["configuration_id"]
    return frame["run_id"].str.rsplit("/", n=1).str[0]


def load_sweep(folder: Path) -> dict[str, pd.DataFrame]:
    """The tables of a sweep folder, keeping only complete specs (those with a runs row)."""
    done = done_keys(folder)
    tables = {}
    for name in TABLES:
        path = folder / f"{name}.jsonl"
        rows = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame = frame[_configuration_ids(frame).isin(done)].reset_index(drop=True)
        tables[name] = frame
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wattcounts_pipeline.sweep", description=__doc__)
    parser.add_argument("experiments", nargs="+", type=Path, help="experiment YAML files")
    parser.add_argument("--out", type=Path, required=True, help="results folder (resumed if it exists)")
    parser.add_argument("--meter", default=None, help="nvml | rapl | estimate (default: best available)")
    parser.add_argument("--max-seconds", type=float, default=None, help="start no new spec after this long")
    parser.add_argument("--only", default="", help="measure only keys containing this text")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    specs = [s for s in load_experiments(args.experiments).values() if args.only in s.key]
    counts = run_sweep(specs, args.out, args.meter, args.max_seconds)
    print(json.dumps(counts), flush=True)
    return 0


def find_recorded(key: str, folders: list[Path]) -> tuple[Path, dict[str, pd.DataFrame]] | None:
    """The rows of configuration `key` from the first recorded sweep folder that holds it."""
    for folder in folders:
        if key in done_keys(folder):
            tables = load_sweep(folder)
            picked = {}
            for name, frame in tables.items():
                if frame.empty:
                    picked[name] = frame
                    continue
                picked[name] = frame[_configuration_ids(frame) == key].reset_index(drop=True)
            return folder, picked
    return None


if __name__ == "__main__":
    sys.exit(main())
