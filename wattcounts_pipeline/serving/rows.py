"""One `load_points` row (schemas/load_points.yaml) from what a load point produced: the generator's outcomes,
the meter's reading over the same window, the idle power and the server's own gauges."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.meters import host
from wattcounts_pipeline.meters.base import EnergyReading
from wattcounts_pipeline.meters.estimate import cpu_model_name, hardware_id
from wattcounts_pipeline.serving.loadgen import Outcome
from wattcounts_pipeline.serving.spec import ServingSpec

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class PointContext:
    """What a row needs besides the outcomes and the reading: which point, which server, when."""

    spec: ServingSpec
    point_index: int
    level: float  # users (closed) or requests/s (open)
    idle_power_w: float
    server: str
    framework_version: str
    engine_args: dict[str, Any]
    started_at: str = ""
    source: str = "watt-counts"


def percentiles(values: list[float], prefix: str) -> dict[str, float | None]:
    """`{prefix}_p50_s`, `_p90_s`, `_p99_s` (linear interpolation; None without values)."""
    if not values:
        return {f"{prefix}_p{p}_s": None for p in PERCENTILES}
    return {f"{prefix}_p{p}_s": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


def meets_slo(outcome: Outcome, ttft_s: float | None, tpot_s: float | None) -> bool:
    """Completed, and within every target given (a one-token answer has no TPOT to miss)."""
    if outcome.result is None:
        return False
    if ttft_s is not None and (outcome.ttft_s or 0.0) > ttft_s:
        return False
    tpot = outcome.result.tpot_s
    return tpot_s is None or tpot is None or tpot <= tpot_s


def _hardware(reading: EnergyReading) -> dict[str, Any]:
    dev = reading.device_info
    # the host as the run rows record it (meters/host.py): a server's loop is host-bound past a few users
    return {"hardware_id": hardware_id(dev), "cpu_model": cpu_model_name(), "cpu_count": os.cpu_count() or 1,
            "cpu_set": host.cpu_set(), "cpu_mhz": host.cpu_mhz(), "host_calibration_ns": host.calibration_ns(),
            "gpu_name": dev.get("gpu_name"), "gpu_count": int(dev.get("gpu_count") or 0)}


def load_point_row(ctx: PointContext, outcomes: list[Outcome], reading: EnergyReading,
                   server_gauges: dict[str, Any]) -> dict[str, Any]:
    """The row of one load point; BackendError when no request completed (nothing to divide by)."""
    spec, slo = ctx.spec, ctx.spec.slo
    done = [o for o in outcomes if o.result is not None]
    if not done:
        errors = sorted({o.error for o in outcomes if o.error})[:3]
        raise BackendError(f"load point {ctx.point_index}: none of {len(outcomes)} requests completed: {errors}")
    results = [o.result for o in done if o.result is not None]
    duration_s = reading.duration_s
    energy_j = reading.total_energy_j
    net_j = energy_j - ctx.idle_power_w * duration_s
    out_tokens = sum(r.output_tokens for r in results)
    good = sum(meets_slo(o, slo.ttft_s, slo.tpot_s) for o in outcomes)
    closed = spec.load.mode == "closed"
    return {
        "sweep_id": spec.key, "point_index": ctx.point_index, "experiment": spec.experiment,
        "model": spec.model.name, "model_source": spec.model.source, "weights": spec.model.weights,
        "architecture": spec.model.architecture, "quantization": spec.quantization, "framework": spec.framework,
        "server": ctx.server, "framework_version": ctx.framework_version,
        "engine_args_json": json.dumps(ctx.engine_args, sort_keys=True, default=str), "slots": spec.slots,
        "workload": spec.workload.name, "scenario": spec.workload.scenario or None, "mix": spec.workload.mix,
        "load_mode": spec.load.mode, "users": int(ctx.level) if closed else None,
        "offered_rate_per_s": None if closed else float(ctx.level),
        "achieved_rate_per_s": len(done) / duration_s, "duration_s": duration_s,
        "requests_offered": len(outcomes), "requests_completed": len(done),
        "requests_failed": sum(1 for o in outcomes if o.sent and o.result is None),
        "input_tokens_mean": float(np.mean([r.input_tokens for r in results])),
        "output_tokens_total": out_tokens, "output_tokens_per_s": out_tokens / duration_s,
        "energy_j": energy_j, "energy_net_j": net_j, "idle_power_w": ctx.idle_power_w,
        "mean_power_w": reading.mean_power_w,
        "energy_per_request_j": energy_j / len(done), "energy_per_request_net_j": net_j / len(done),
        "energy_per_output_token_j": energy_j / out_tokens, "energy_per_output_token_net_j": net_j / out_tokens,
        **percentiles([o.ttft_s for o in done if o.ttft_s is not None], "ttft"),
        **percentiles([r.tpot_s for r in results if r.tpot_s is not None], "tpot"),
        **percentiles([o.e2e_s for o in done if o.e2e_s is not None], "e2e"),
        "slo_ttft_s": slo.ttft_s, "slo_tpot_s": slo.tpot_s, "slo_target": slo.target,
        "slo_attainment": good / len(outcomes), "goodput_per_s": good / duration_s, "saturated": False,
        **server_gauges,
        "energy_method": reading.method, "energy_flags": ",".join(reading.flags), **_hardware(reading),
        "started_at": ctx.started_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": ctx.source,
    }


def is_saturated(previous: dict[str, Any] | None, row: dict[str, Any], min_gain: float) -> bool:
    """Throughput stopped rising: this point completed under `min_gain` more requests per second than the previous
    one although it was offered more. (Comparing with the offered rate instead misleads on short windows: the
    window's drain and Poisson noise alone put a lightly loaded point 10-20% under its nominal rate.)"""
    return previous is not None and row["achieved_rate_per_s"] < (1 + min_gain) * previous["achieved_rate_per_s"]
