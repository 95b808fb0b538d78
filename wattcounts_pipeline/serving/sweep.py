"""A saturation sweep: one server, its idle draw, then load points of rising load until throughput stops rising or
the SLO breaks. Each point's energy window is the whole load interval (from the first request offered until the
last one ended), so the energy between requests counts, and it is the same window the generator reports on.

A server that dies or stalls mid-sweep fails that point with its log tail; the points measured before it stay,
written to disk as each one ended.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.measure.run import check_hardware
from wattcounts_pipeline.meters.base import EnergyMeter
from wattcounts_pipeline.meters.protocol import measure_idle
from wattcounts_pipeline.serving import store
from wattcounts_pipeline.serving.loadgen import Outcome, closed_loop, open_loop, poisson_arrivals
from wattcounts_pipeline.serving.mixes import workload_lengths
from wattcounts_pipeline.serving.rows import PointContext, is_saturated, load_point_row
from wattcounts_pipeline.serving.server_metrics import MetricsPoller, summarize
from wattcounts_pipeline.serving.servers import ServingTarget
from wattcounts_pipeline.serving.spec import ServingSpec
from wattcounts_pipeline.serving.synthetic import synthetic_prompts

logger = logging.getLogger(__name__)

PointHook = Callable[[int, float, ServingTarget], None]  # (point index, level, server) before each point


@dataclass(frozen=True)
class PointFailure:
    """A load point that failed: which, at what load, and why (with the server's log tail)."""

    sweep_id: str
    point_index: int
    level: float
    load_mode: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "point_index": self.point_index, "level": self.level,
                "load_mode": self.load_mode, "error": self.error}


@dataclass
class SweepResult:
    """The rows measured, the failed point (if any), and why the sweep stopped."""

    spec: ServingSpec
    rows: list[dict[str, Any]] = field(default_factory=list)
    failure: PointFailure | None = None
    stop_reason: str = ""
    folder: Path | None = None


def level_text(mode: str, level: float) -> str:
    return f"{int(level)} users" if mode == "closed" else f"{level:g} requests/s"


def _offer(spec: ServingSpec, point_index: int, level: float, send: Any) -> list[Outcome]:
    plan = spec.load
    if plan.mode == "closed":
        return closed_loop(send, int(level), plan.duration_s)
    arrivals = poisson_arrivals(level, plan.duration_s, plan.min_requests, seed=f"{spec.workload.seed}/{level:.9g}")
    return open_loop(send, arrivals, plan.max_in_flight)


def measure_point(spec: ServingSpec, target: ServingTarget, meter: EnergyMeter, point_index: int, level: float,
                  send: Any, idle_power_w: float) -> dict[str, Any]:
    """One load point's row; BackendError (with the server's log tail) when the server died or stalled."""
    key = f"{spec.key}/p{point_index}"
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    poller = MetricsPoller(target.metrics_url)
    meter.begin_window(key)
    poller.start()
    try:
        outcomes = _offer(spec, point_index, level, send)
    finally:
        reading = meter.end_window(key)
        poller.stop()
    fatal = [o for o in outcomes if o.fatal]
    where = f"load point {point_index} ({level_text(spec.load.mode, level)})"
    if not target.alive(grace_s=2.0 if fatal else 0.0):  # lost connections: is the server on its way out?
        detail = f": {fatal[0].error}" if fatal else ""
        raise target.fail(f"{where}: the server process exited mid-point{detail}")
    if fatal:
        stalled = any("TimeoutError" in o.error or "timed out" in o.error for o in fatal)
        why = (f"the server stalled (no answer within {spec.timeout_s:g} s)" if stalled
               else "the connection to the server was lost")
        raise target.fail(f"{where}: {why}: {fatal[0].error}")
    gauges = summarize(poller.samples, spec.slots, poller.url)
    info = target.info()
    ctx = PointContext(spec=spec, point_index=point_index, level=level, idle_power_w=idle_power_w,
                       server=target.server_name, framework_version=str(info.get("framework_version", "")),
                       engine_args=dict(info.get("engine_args", spec.engine_kwargs)), started_at=started_at)
    row = load_point_row(ctx, outcomes, reading, gauges)
    logger.info("%s: %s offered, %.3g req/s achieved, %.4g J/request, p90 TPOT %.3g s, SLO %.0f%%", key,
                level_text(spec.load.mode, level), row["achieved_rate_per_s"], row["energy_per_request_j"],
                row["tpot_p90_s"] or float("nan"), 100 * row["slo_attainment"])
    return row


def run_sweep(spec: ServingSpec, meter: EnergyMeter, root: Path | None = None,
              before_point: PointHook | None = None) -> SweepResult:
    """Measure `spec`'s load points under `meter`; rows and a failed point are written to the sweep's folder
    under `root` (default $WATTCOUNTS_HOME/serving) as they happen. A point that fails (or a server that never
    starts) ends the sweep and is returned in `failure`, with the server's log tail."""
    pairs = workload_lengths(spec.workload)
    folder = store.sweep_folder(spec.key, root, fresh=True)
    store.append_jsonl(folder / store.SPEC, spec.to_dict())
    result = SweepResult(spec=spec, folder=folder)
    levels = spec.load.levels()
    target: ServingTarget | None = None
    try:
        target = ServingTarget(spec, max(p.input_tokens for p in pairs), max(p.output_tokens for p in pairs))
        check_hardware(target.backend.spec, meter.describe())
        target.start()
        prompts = synthetic_prompts(pairs, target.tokenize, target.bos_token_ids, spec.workload.seed)
        send = target.send(target.completions(prompts))
        _warm_up(spec, target, send)
    except BackendError as exc:  # no point measured: the sweep's one failure, recorded like a point's
        if target is not None:
            target.close()
        result.failure = PointFailure(spec.key, 0, levels[0], spec.load.mode, f"before the first load point: {exc}")
        store.append_jsonl(folder / store.FAILURES, result.failure.to_dict())
        result.stop_reason = "the server did not start or answer its warm-up"
        logger.error("%s: %s", spec.key, exc)
        return result
    try:
        idle_power_w = sum(measure_idle(meter, spec.idle_s).values()) if spec.idle_s > 0 else 0.0
        previous: dict[str, Any] | None = None
        for point_index, level in enumerate(levels):
            if before_point is not None:
                before_point(point_index, level, target)
            try:
                row = measure_point(spec, target, meter, point_index, level, send, idle_power_w)
            except BackendError as exc:
                result.failure = PointFailure(spec.key, point_index, level, spec.load.mode, str(exc))
                store.append_jsonl(folder / store.FAILURES, result.failure.to_dict())
                result.stop_reason = f"load point {point_index} failed"
                logger.error("%s: %s", spec.key, exc)
                break
            row["saturated"] = is_saturated(previous, row, spec.load.min_gain)
            result.rows.append(row)
            store.append_jsonl(folder / store.ROWS, row)
            previous = row
            if spec.load.stop_at_saturation and (stop := _stop_reason(row)):
                result.stop_reason = stop
                break
        else:
            result.stop_reason = "every load level measured"
    finally:
        target.close()
    return result


def _warm_up(spec: ServingSpec, target: ServingTarget, send: Any) -> None:
    """A few requests outside any window (first requests allocate and page in weights)."""
    for i in range(spec.warmup_requests):
        try:
            send(i, time.perf_counter())
        except BackendError as exc:
            raise target.fail(f"{spec.key}: warm-up request {i} failed: {exc}") from exc


def _stop_reason(row: dict[str, Any]) -> str:
    """Why to offer no more load after this point ('' to go on)."""
    if row["saturated"]:
        return f"saturated at point {row['point_index']}: throughput stopped rising"
    if row["slo_attainment"] < row["slo_target"]:
        return (f"SLO broken at point {row['point_index']}: {row['slo_attainment']:.0%} of requests within "
                f"target (needs {row['slo_target']:.0%})")
    return ""
