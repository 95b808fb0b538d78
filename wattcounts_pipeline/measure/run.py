"""Measure one spec: idle baseline, warm-up, repeated measured windows → run and request rows.

Plain library code: the `measurements` asset calls `measure_spec` and stores what it returns.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from importlib import metadata
from typing import Any

import pandas as pd

from wattcounts_pipeline import __version__
from wattcounts_pipeline.backends.base import InferenceBackend, Prompt, RequestResult, backend_for
from wattcounts_pipeline.backends.weights import resolve_spec_model
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec
from wattcounts_pipeline.meters import host
from wattcounts_pipeline.meters.attribution import attribute_energy, split_prefill_decode
from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading
from wattcounts_pipeline.meters.estimate import cpu_model_name, hardware_id
from wattcounts_pipeline.meters.protocol import cool_down, measure_idle
from wattcounts_pipeline.workloads.prompts import build_prompts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """Everything one spec produced."""

    runs: pd.DataFrame
    requests: pd.DataFrame
    traces: pd.DataFrame  # power samples of every measured window (empty without a sampler)


@dataclass(frozen=True)
class Step:
    """Where `measure_spec` is, for a progress display: the phase (load, warmup, cooldown, idle, window, prefill,
    repetition_done), the repetition (1-based; 0 outside them), requests finished in the current window, and the
    finished run row after each repetition."""

    phase: str
    repetition: int = 0
    repetitions: int = 0
    requests: int = 0
    row: dict[str, Any] | None = None


ProgressFn = Callable[[Step], None]


def _quiet(step: Step) -> None:
    """The default progress hook: measure without telling anyone."""


def _tell(progress: ProgressFn, step: Step, requests: int) -> None:
    progress(replace(step, requests=requests))


def _software() -> dict[str, str]:
    versions = {"python": platform.python_version(), "wattcounts": __version__}
    for dist in ("torch", "transformers", "llama_cpp_python", "vllm", "nvidia-ml-py", "lm_eval", "zeus"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def measure_spec(spec: ExperimentSpec, meter: EnergyMeter, source: str = "watt-counts",
                 cold_idle_power_w: float | None = None, progress: ProgressFn = _quiet) -> Measurement:
    """Run `spec` under `meter`. Raises BackendError (naming the path) when the model cannot run.
    `cold_idle_power_w`: the machine's draw before any CUDA context existed (see `sweep --cold-idle-s`); rows
    then carry net energy against that floor too, beside the hot idle measured here after warm-up.
    `progress` is told each step (`wattcounts measure` draws its progress display from it)."""
    check_hardware(spec, meter.describe())
    progress(Step("load"))
    model_path, provenance = resolve_spec_model(spec)
    backend: InferenceBackend = backend_for(spec)(spec, model_path)
    backend.load()
    try:
        return _measure_loaded(spec, backend, meter, source, provenance, cold_idle_power_w, progress)
    finally:
        backend.close()


def check_hardware(spec: ExperimentSpec, device_info: dict[str, Any]) -> None:
    """Refuse a spec pinned to other hardware: its rows would carry the wrong card under its id."""
    if spec.hardware == "any":
        return
    name = str(device_info.get("gpu_name") or "")
    if spec.hardware not in name.lower():
        raise BackendError(f"{spec.key} is to be measured on {spec.hardware!r}, but this host measures "
                           f"{name or 'no GPU'!r}")


def _measure_loaded(spec: ExperimentSpec, backend: InferenceBackend, meter: EnergyMeter, source: str,
                    provenance: dict[str, str], cold_idle_power_w: float | None,
                    progress: ProgressFn = _quiet) -> Measurement:
    prompts = build_prompts(spec.workload, backend.tokenize, backend.bos_token_ids)
    batch = spec.workload.batch_size
    baseline_temps_c = meter.temperatures_c()
    if spec.warmup_requests:  # also where compiled paths compile: kept out of every measured window
        logger.info("%s: warm-up (%d batches, excluded)", spec.key, spec.warmup_requests)
        progress(Step("warmup"))
        backend.generate(prompts[: spec.warmup_requests * batch], batch)
    if baseline_temps_c:
        progress(Step("cooldown"))
        cool_down(meter, baseline_temps_c)
    progress(Step("idle"))
    idle_power_w = sum(measure_idle(meter, spec.idle_s).values())
    software = _software()
    info = backend.info()
    info["engine_args"] = {**info.get("engine_args", spec.engine_kwargs), **provenance}
    run_rows: list[dict[str, Any]] = []
    request_rows: list[dict[str, Any]] = []
    trace_rows: list[dict[str, Any]] = []
    for rep in range(spec.repetitions):
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        key = f"{spec.key}/r{rep}"
        step = Step("window", rep + 1, spec.repetitions)
        progress(step)
        reading, results = _window(spec, backend, meter, key, prompts, partial(_tell, progress, step))
        logger.info("%s: %.2f s, %.1f J (%s), %.1f tok/s", key, reading.duration_s, reading.total_energy_j,
                    reading.method, sum(r.output_tokens for r in results) / reading.duration_s)
        row = _run_row(spec, rep, reading, results, idle_power_w, info, software, started_at, source)
        row.update(_cold_net(row, cold_idle_power_w))
        if spec.prefill_split:
            progress(Step("prefill", rep + 1, spec.repetitions))
            row.update(_prefill_split(spec, backend, meter, key, prompts, row))
        run_rows.append(row)
        progress(Step("repetition_done", rep + 1, spec.repetitions, len(results), row))
        shares = attribute_energy([(r.start_s, r.start_s + r.e2e_s) for r in results], reading.mean_power_w,
                                  window_s=(0.0, reading.duration_s)).per_request_j
        for i, (r, energy_j) in enumerate(zip(results, shares)):
            request_rows.append({
                "run_id": key, "configuration_id": spec.configuration_id, "request_index": i,
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "start_s": r.start_s,
                "ttft_s": r.ttft_s, "tpot_s": r.tpot_s, "e2e_s": r.e2e_s, "energy_j": energy_j})
        trace_rows.extend({"run_id": key, "t_s": s.t_s, "domain": s.domain, "power_w": s.power_w,
                           "temperature_c": s.temperature_c, "sm_clock_mhz": s.sm_clock_mhz}
                          for s in reading.samples)
    return Measurement(pd.DataFrame(run_rows), pd.DataFrame(request_rows), pd.DataFrame(trace_rows))


def _window(spec: ExperimentSpec, backend: InferenceBackend, meter: EnergyMeter, key: str,
            prompts: list[Prompt], done: Callable[[int], None] = lambda n: None
            ) -> tuple[EnergyReading, list[RequestResult]]:
    """One measured window: the prompts, again and again until it lasts `min_window_s`; `done` hears the count
    of finished requests after each pass."""
    meter.begin_window(key, sync=backend.sync)
    t0 = time.perf_counter()
    results: list[RequestResult] = []
    while not results or time.perf_counter() - t0 < spec.min_window_s:  # short workloads repeat
        offset_s = time.perf_counter() - t0
        results += [replace(r, start_s=r.start_s + offset_s)
                    for r in backend.generate(prompts, spec.workload.batch_size)]
        done(len(results))
    return meter.end_window(key, sync=backend.sync), results


def _prefill_split(spec: ExperimentSpec, backend: InferenceBackend, meter: EnergyMeter, key: str,
                   prompts: list[Prompt], row: dict[str, Any]) -> dict[str, Any]:
    """A prefill-only window (same prompts, one output token each) right after the full one: its energy per
    request, times the full run's requests, is the run's prefill; the rest of the run decoded the other
    tokens. Noise larger than the decode share leaves the split empty and says so in the flags."""
    reading, results = _window(spec, backend, meter, key + "/prefill", [replace(p, max_new_tokens=1)
                                                                       for p in prompts])
    prefill_j = reading.total_energy_j / len(results) * row["num_requests"]
    try:
        split = split_prefill_decode(row["energy_j"], row["output_tokens_total"], prefill_j, row["num_requests"])
    except ValueError as exc:
        logger.warning("%s: no prefill/decode split: %s", key, exc)
        flags = ",".join(f for f in (row["energy_flags"], "prefill_split_failed") if f)
        return {"prefill_energy_j": None, "decode_energy_per_token_j": None, "energy_flags": flags}
    logger.info("%s: prefill %.1f J for %d requests, decode %.4f J/token", key, prefill_j, row["num_requests"],
                split.decode_energy_j_per_token)
    return {"prefill_energy_j": prefill_j, "decode_energy_per_token_j": split.decode_energy_j_per_token}


def _cold_net(row: dict[str, Any], cold_idle_power_w: float | None) -> dict[str, Any]:
    """Net energy per token against the cold floor (None without one)."""
    if cold_idle_power_w is None:
        return {"cold_idle_power_w": None, "energy_per_token_net_cold_j": None}
    net_j = row["energy_j"] - cold_idle_power_w * row["duration_s"]
    return {"cold_idle_power_w": cold_idle_power_w,
            "energy_per_token_net_cold_j": net_j / row["output_tokens_total"]}


def _energy_by_gpu_json(reading: EnergyReading) -> str | None:
    """Each GPU's joules in CUDA ordinal order ("gpu:0", "gpu:1", …), JSON; None without GPU domains."""
    gpus = sorted((int(d.split(":", 1)[1]), e) for d, e in reading.energy_j.items()
                  if d.startswith("gpu:") and d.split(":", 1)[1].isdigit())
    return json.dumps([round(e, 3) for _, e in gpus]) if gpus else None


def _run_row(spec: ExperimentSpec, rep: int, reading: EnergyReading, results: list[RequestResult],
             idle_power_w: float, info: dict[str, Any], software: dict[str, str], started_at: str,
             source: str) -> dict[str, Any]:
    dev = reading.device_info
    out_tokens = sum(r.output_tokens for r in results)
    energy_j = reading.total_energy_j
    net_j = energy_j - idle_power_w * reading.duration_s
    temps = [s.temperature_c for s in reading.samples if s.temperature_c is not None]
    clocks = [s.sm_clock_mhz for s in reading.samples if s.sm_clock_mhz is not None]
    return {
        "run_id": f"{spec.key}/r{rep}", "configuration_id": spec.configuration_id,
        "experiment": spec.experiment, "repetition": rep,
        "model": spec.model.name, "model_source": spec.model.source, "weights": spec.model.weights,
        "architecture": spec.model.architecture, "quantization": spec.quantization,
        "framework": spec.framework, "dtype": spec.dtype,
        "engine_args_json": json.dumps(info.get("engine_args", spec.engine_kwargs), sort_keys=True, default=str),
        "workload": spec.workload.name, "workload_kind": spec.workload.kind,
        "batch_size": spec.workload.batch_size, "num_requests": len(results),
        "input_tokens_total": sum(r.input_tokens for r in results), "output_tokens_total": out_tokens,
        "duration_s": reading.duration_s, "energy_j": energy_j, "energy_net_j": net_j,
        "idle_power_w": idle_power_w,
        "gpu_energy_j": reading.domain_energy_j("gpu"), "cpu_energy_j": reading.domain_energy_j("cpu"),
        "dram_energy_j": reading.domain_energy_j("dram"),
        "mean_power_w": energy_j / reading.duration_s, "energy_method": reading.method,
        "energy_flags": ",".join(reading.flags),
        "tokens_per_s": out_tokens / reading.duration_s,
        "energy_per_token_j": energy_j / out_tokens, "energy_per_token_net_j": net_j / out_tokens,
        "energy_per_request_j": energy_j / len(results),
        "hardware_id": hardware_id(dev), "cpu_model": cpu_model_name(), "cpu_count": os.cpu_count() or 1,
        "cpu_set": host.cpu_set(), "cpu_mhz": host.cpu_mhz(), "host_calibration_ns": host.calibration_ns(),
        "gpu_name": dev.get("gpu_name"), "gpu_count": int(dev.get("gpu_count") or 0),
        "gpu_uuids": ",".join(dev.get("gpu_uuids") or []) or None,
        "parallelism": spec.parallelism,
        "gpu_energy_j_by_gpu": _energy_by_gpu_json(reading),
        "gpu_power_limit_w": dev.get("power_limit_w"), "driver_version": dev.get("driver_version"),
        "temperature_start_c": temps[0] if temps else dev.get("temperature_c"),
        "temperature_end_c": temps[-1] if temps else None,
        "sm_clock_mhz": sum(clocks) / len(clocks) if clocks else None,
        "framework_version": str(info.get("framework_version", "")),
        "software_json": json.dumps(software, sort_keys=True),
        "started_at": started_at, "source": source,
    }
