"""Resumable sweeps behind `wattcounts sweep EXPERIMENT.yaml --out DIR` and `wattcounts pack DIR...`.

For GPU hosts reached without Dagster (a lent machine, a batch job): the same `measure_spec` as the
`measurements` asset, one spec after another, each finished spec appended to `DIR/*.jsonl` at once
(flushed), so a killed sweep loses at most the spec in progress and a rerun skips what is done.
A failing spec is recorded in `failures.jsonl` and the sweep goes on. `--shards N` runs N sweeps at once,
one per visible GPU (each sees only its own through CUDA_VISIBLE_DEVICES), taking specs from a shared
claims file, so a 4-GPU host measures four 1-GPU configurations at a time; appends are locked. Committed under
`data/measurements/<sweep>/`, the `measurements` asset serves such recorded rows for their partitions,
and they are validated like live ones. A finished folder is packed before it is committed: each JSONL table
becomes a zstd parquet file, checked to read back identical before the JSONL goes (see `measure.store`).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec, load_experiments
from wattcounts_pipeline.measure.run import Measurement, measure_spec
from wattcounts_pipeline.measure.store import done_keys, pack_sweep
from wattcounts_pipeline.meters.base import EnergyMeter
from wattcounts_pipeline.meters.protocol import measure_idle
from wattcounts_pipeline.meters.select import best_meter

logger = logging.getLogger(__name__)


def _append(path: Path, frame: pd.DataFrame) -> None:
    """Append rows as JSON lines under an exclusive lock (shards of one sweep share the files)."""
    text = "".join(json.dumps(record, default=str) + "\n" for record in frame.to_dict(orient="records"))
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(text)
        fh.flush()


def claim(claims: Path, key: str) -> bool:
    """Take `key` for this process unless another shard already has; True when it is ours."""
    with claims.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        if key in fh.read().splitlines():
            return False
        fh.write(key + "\n")
        fh.flush()
        return True


def record_result(out: Path, spec: ExperimentSpec, result: Measurement) -> None:
    """Append one measured spec's tables to the sweep folder `out`; the runs row goes last, marking it done."""
    _append(out / "requests.jsonl", result.requests)
    _append(out / "power_traces.jsonl", result.traces)
    _append(out / "specs.jsonl", pd.DataFrame([{"configuration_id": spec.key,
                                                "spec": json.dumps(spec.to_dict(), default=str)}]))
    _append(out / "runs.jsonl", result.runs)


def run_sweep(specs: list[ExperimentSpec], out: Path, meter_name: str | None = None,
              max_seconds: float | None = None, claims: Path | None = None,
              recorded: tuple[Path, ...] = (), cold_idle_s: float = 0.0, echo: bool = True) -> dict[str, int]:
    """Measure every spec not yet in `out` or in the `recorded` sweep folders (and, with `claims`, not taken
    by another shard); stop starting new ones after `max_seconds`. Each spec runs on its first `spec.gpus`
    visible GPUs. `cold_idle_s` > 0: the first meter first measures the idle floor for that long, before this
    process has loaded any model (so before any CUDA context), and that meter's rows carry it. `echo` prints one
    JSON line per measured spec."""
    out.mkdir(parents=True, exist_ok=True)
    done = done_keys(out).union(*(done_keys(folder) for folder in recorded))
    todo = [s for s in specs if s.key not in done]
    logger.info("sweep: %d specs, %d done, %d to go", len(specs), len(done), len(todo))
    meters: dict[int, EnergyMeter] = {}
    cold_idle_w: dict[int, float] = {}
    start = time.monotonic()
    counts = {"measured": 0, "failed": 0, "skipped": len(specs) - len(todo), "claimed_elsewhere": 0}
    try:
        for i, spec in enumerate(todo, 1):
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                logger.info("sweep: time budget spent; %d specs left for the next call", len(todo) - i + 1)
                break
            if claims is not None and not claim(claims, spec.key):
                counts["claimed_elsewhere"] += 1
                continue
            logger.info("[%d/%d] %s", i, len(todo), spec.key)
            try:
                if spec.gpus not in meters:
                    meter = meters[spec.gpus] = best_meter(meter_name, gpus=spec.gpus)
                    cold = {}
                    if cold_idle_s > 0 and counts["measured"] + counts["failed"] == 0:
                        temps_c = meter.temperatures_c()
                        cold_idle_w[spec.gpus] = sum(measure_idle(meter, cold_idle_s).values())
                        cold = {"cold_idle_power_w": cold_idle_w[spec.gpus], "cold_idle_s": cold_idle_s,
                                "cold_idle_temperature_c": max(temps_c.values(), default=None)}
                        logger.info("cold idle floor: %.1f W over %.0f s", cold_idle_w[spec.gpus], cold_idle_s)
                    (out / "meter.json").write_text(json.dumps(
                        {"method": meter.method, **meter.describe(), **cold}, default=str))
                result = measure_spec(spec, meters[spec.gpus], cold_idle_power_w=cold_idle_w.get(spec.gpus))
            except Exception as exc:  # noqa: BLE001 - one broken configuration must not end the sweep
                counts["failed"] += 1
                _append(out / "failures.jsonl", pd.DataFrame([{
                    "configuration_id": spec.key, "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(limit=5), "spec": json.dumps(spec.to_dict(), default=str)}]))
                logger.error("%s failed: %s", spec.key, exc)
                continue
            record_result(out, spec, result)
            counts["measured"] += 1
            r = result.runs
            if echo:
                print(json.dumps({"configuration_id": spec.key, "tokens_per_s": round(float(r["tokens_per_s"].mean()), 2),
                              "energy_per_token_j": round(float(r["energy_per_token_j"].mean()), 5),
                              "method": r["energy_method"].iloc[0]}), flush=True)
    finally:
        for meter in meters.values():
            meter.close()
    return counts


def run_shards(argv: list[str], shards: int, specs: list[ExperimentSpec], claims: Path | None = None) -> int:
    """Start one sweep per GPU (`wattcounts sweep` with `argv` and --claims), wait for all; 0 when every shard ended well.
    A given `claims` file lets a later sweep (another GPU freed by other work) join the same queue."""
    wide = [s.key for s in specs if s.gpus > 1]
    if wide:
        logger.warning("sharded sweep: %d multi-GPU specs left out (run them without --shards): %s",
                       len(wide), ", ".join(wide))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu_ids = visible.split(",") if visible else [str(i) for i in range(shards)]
    if len(gpu_ids) < shards:
        raise SystemExit(f"--shards {shards} but only {len(gpu_ids)} GPUs visible ({visible!r})")
    with tempfile.TemporaryDirectory(prefix="wattcounts-claims-") as tmp:
        claims = claims or Path(tmp) / "claims.txt"
        with claims.open("a") as handle:  # claimed up front: no shard takes them
            handle.write("".join(key + "\n" for key in wide))
        procs = [subprocess.Popen([sys.executable, "-m", "wattcounts_pipeline.cli", "sweep",
                                   *argv, "--claims", str(claims),
                                   "--log-prefix", f"gpu{gpu_ids[i]}"],
                                  env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu_ids[i]})
                 for i in range(shards)]
        codes = [p.wait() for p in procs]
    logger.info("sharded sweep: shard exit codes %s", codes)
    return max(codes, default=0)


def sweep_command(args: argparse.Namespace) -> int:
    """`wattcounts sweep` (arguments from `measure.cli`): 0 done, 1 every spec tried failed, 2 a bad file."""
    _log_progress(f"[{args.log_prefix}] " if args.log_prefix else "")
    loaded: dict[str, ExperimentSpec] = {}
    bad_files = 0
    for path in args.experiments:  # one bad file is reported and skipped; the others still run
        try:
            for key, spec in load_experiments([path]).items():
                loaded.setdefault(key, spec)
        except SpecError as exc:
            bad_files += 1
            logger.error("skipping %s", exc)
    if bad_files and not loaded:
        return 2
    wanted = args.only.split(",")  # "" keeps every spec
    specs = [s for s in loaded.values() if any(part in s.key for part in wanted)]
    if args.hardware:
        specs = [dataclasses.replace(s, hardware=args.hardware.lower()) for s in specs]
    if args.shards > 1:
        return run_shards(_shard_argv(args), args.shards, specs, args.claims)
    as_json = getattr(args, "json", False)
    counts = run_sweep(specs, args.out, args.meter, args.max_seconds, args.claims, tuple(args.recorded),
                       args.cold_idle_s, echo=not as_json)
    code = 2 if bad_files else 1 if counts["failed"] and not counts["measured"] else 0  # all failed: say so
    print(json.dumps({"ok": code == 0, "exit_code": code, **counts} if as_json else counts), flush=True)
    return code


def pack_command(args: argparse.Namespace) -> int:
    """`wattcounts pack DIR...`: each folder's JSONL tables to parquet (removed once the parquet reads back equal)."""
    _log_progress()
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        print(json.dumps({"ok": False, "exit_code": 2, "error": f"not a folder: {', '.join(missing)}"})
              if args.json else f"wattcounts pack: error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    packed = {str(folder): pack_sweep(folder, args.level) for folder in args.folders}
    if args.json:
        print(json.dumps({"ok": True, "packed": packed}), flush=True)
    else:
        for folder, tables in packed.items():
            print(json.dumps({"folder": folder, "packed": tables}), flush=True)
    return 0


def _log_progress(prefix: str = "") -> None:
    """INFO with timestamps on the handlers `wattcounts` set up: a sweep's log is its progress record
    (committed beside the rows as log-sweep.txt), and shards tell themselves apart by `prefix`."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(message)s"))


def _shard_argv(args: argparse.Namespace) -> list[str]:
    """The `sweep` arguments each shard is started with: the parent's, less --shards, --claims and the log prefix."""
    argv = [*map(str, args.experiments), "--out", str(args.out), "--only", args.only,
            "--cold-idle-s", str(args.cold_idle_s)]
    for recorded in args.recorded:
        argv += ["--recorded", str(recorded)]
    for option, value in (("--meter", args.meter), ("--max-seconds", args.max_seconds), ("--hardware", args.hardware)):
        if value is not None:
            argv += [option, str(value)]
    return argv
