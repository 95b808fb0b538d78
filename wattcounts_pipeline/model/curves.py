"""Answers from measured load curves (rows of serving sweeps, schemas/load_points.yaml): a configuration's energy and latency at a load (users or requests/s),
interpolated between measured points, and extrapolated, with the reason said, outside them.

Beyond the highest load measured: a closed loop keeps the last point's throughput X, energy per request and TPOT
(a saturated server is busy all the time), and its latency follows Little's law (N users / X requests/s), which
is exact once saturated and an upper bound before; an open loop offered more than the capacity measured cannot be
served (its queue grows without bound). Below the lowest load: the net energy per request is held and the idle
power is spread over fewer requests; latency is held. The SLO is checked on p90 TTFT and p90 TPOT.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SpecError, WattCountsError

METRICS = ("energy_per_request_j", "energy_per_request_net_j", "energy_per_output_token_j", "achieved_rate_per_s",
           "ttft_p50_s", "ttft_p90_s", "tpot_p50_s", "tpot_p90_s", "e2e_p50_s", "e2e_p90_s", "mean_power_w",
           "idle_power_w", "output_tokens_total", "requests_completed")
SETUP = ("model", "architecture", "quantization", "framework", "server", "slots", "hardware_id", "workload",
         "scenario", "load_mode")


@dataclass(frozen=True)
class CurveAnswer:
    """One configuration's values at the asked load, and how they were had."""

    sweep_id: str
    model: str
    architecture: str
    quantization: str
    framework: str
    server: str
    slots: int
    hardware_id: str
    workload: str
    load_mode: str
    load: float
    measured_from: float
    measured_to: float
    how: str  # measured | interpolated | extrapolated | unservable
    note: str
    energy_per_request_j: float
    energy_per_output_token_j: float
    achieved_rate_per_s: float
    ttft_p90_s: float
    tpot_p90_s: float | None
    e2e_p90_s: float
    meets_slo: bool
    quality_acc_mean: float | None = None  # the setup's known quality (measured, published or derived), if any
    quality_source: str | None = None
    meets_quality: bool = True  # False when a minimum quality was asked and the setup has no known quality above it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(mode: str) -> str:
    return "users" if mode == "closed" else "requests/s"


def curve_at(points: pd.DataFrame, load: float, ttft_slo_s: float | None, tpot_slo_s: float | None) -> CurveAnswer:
    """The values of one sweep's curve (its rows) at `load` users (closed) or requests/s (open)."""
    mode = str(points["load_mode"].iloc[0])
    level_col = "users" if mode == "closed" else "offered_rate_per_s"
    pts = points.assign(_level=points[level_col].astype(float)).sort_values("_level").reset_index(drop=True)
    levels = pts["_level"].to_numpy(float)
    lo, hi = float(levels[0]), float(levels[-1])
    unit = _unit(mode)
    values = {m: float(np.interp(load, levels, pts[m].astype(float).to_numpy())) for m in METRICS
              if pts[m].notna().all()}
    tpot = values.get("tpot_p90_s")
    if np.any(np.isclose(levels, load)):
        how, note = "measured", f"measured at {load:g} {unit}"
    elif lo < load < hi:
        below, above = levels[levels < load].max(), levels[levels > load].min()
        how, note = "interpolated", f"interpolated between {below:g} and {above:g} {unit}"
    elif load < lo:
        first = pts.iloc[0]
        rate = load / float(first["_level"]) * float(first["achieved_rate_per_s"])  # fewer users/arrivals: less rate
        per_request = float(first["energy_per_request_net_j"]) + float(first["idle_power_w"]) / rate
        tokens_per_request = float(first["output_tokens_total"]) / float(first["requests_completed"])
        values.update(energy_per_request_j=per_request, energy_per_output_token_j=per_request / tokens_per_request,
                      achieved_rate_per_s=rate)
        how, note = "extrapolated", (f"extrapolated below the lowest measured load ({lo:g} {unit}): net energy per "
                                     "request held, idle power spread over fewer requests, latency held")
    else:
        last = pts.iloc[-1]
        capacity = float(pts["achieved_rate_per_s"].max())
        saturated = bool(pts["saturated"].astype(bool).any())
        if mode == "open":
            if load > capacity:
                return _answer(pts, load, lo, hi, "unservable", (
                    f"{load:g} requests/s is above the capacity measured ({capacity:.3g} requests/s, highest load "
                    f"{hi:g}): the queue grows without bound"), values, False, tpot)
            how, note = "extrapolated", (f"extrapolated beyond the highest measured rate ({hi:g} requests/s, "
                                         f"capacity {capacity:.3g}): values held at it")
        else:
            rate = float(last["achieved_rate_per_s"])
            extra_wait_s = load / rate - hi / rate  # Little's law: each added user waits in the queue
            for m in ("ttft_p50_s", "ttft_p90_s", "e2e_p50_s", "e2e_p90_s"):
                values[m] = float(last[m]) + extra_wait_s
            state = ("saturated, so exact in the mean" if saturated
                     else "not yet saturated: an upper bound on latency, throughput may still rise")
            how, note = "extrapolated", (f"extrapolated beyond the highest measured load ({hi:g} users): throughput "
                                         f"{rate:.3g} requests/s, energy per request and TPOT held, latency by Little's "
                                         f"law ({state})")
    ok = (ttft_slo_s is None or values["ttft_p90_s"] <= ttft_slo_s) and (
        tpot_slo_s is None or tpot is None or tpot <= tpot_slo_s)
    return _answer(pts, load, lo, hi, how, note, values, ok, tpot)


def _answer(pts: pd.DataFrame, load: float, lo: float, hi: float, how: str, note: str, values: dict[str, float],
            ok: bool, tpot: float | None) -> CurveAnswer:
    first = pts.iloc[0]
    return CurveAnswer(
        sweep_id=str(first["sweep_id"]), model=str(first["model"]), architecture=str(first["architecture"]),
        quantization=str(first["quantization"]), framework=str(first["framework"]), server=str(first["server"]),
        slots=int(first["slots"]), hardware_id=str(first["hardware_id"]), workload=str(first["workload"]),
        load_mode=str(first["load_mode"]), load=load, measured_from=lo, measured_to=hi, how=how, note=note,
        energy_per_request_j=values["energy_per_request_j"],
        energy_per_output_token_j=values["energy_per_output_token_j"],
        achieved_rate_per_s=values["achieved_rate_per_s"], ttft_p90_s=values["ttft_p90_s"], tpot_p90_s=tpot,
        e2e_p90_s=values["e2e_p90_s"], meets_slo=ok)


def matching_curves(frame: pd.DataFrame, scenario: str, hardware_key: str, load_mode: str) -> dict[str, pd.DataFrame]:
    """The sweeps (by id) measured for `scenario` in `load_mode` on a machine of catalog entry `hardware_key`."""
    from wattcounts_pipeline.model.catalog import hardware_for_row

    if frame.empty or "scenario" not in frame:
        return {}
    rows = frame[(frame["scenario"] == scenario) & (frame["load_mode"] == load_mode)]
    out = {}
    for sweep_id, points in rows.groupby("sweep_id", sort=True):
        first = points.iloc[0]
        gpu_name = first["gpu_name"] if isinstance(first["gpu_name"], str) else None
        try:
            machine = hardware_for_row(gpu_name, int(first["gpu_count"]), str(first["cpu_model"]))
        except WattCountsError:
            continue  # a card the catalog does not know: it answers no catalogued hardware
        if machine.key == hardware_key:
            out[str(sweep_id)] = points
    return out


def answer_from_curves(frame: pd.DataFrame, scenario: str, hardware_key: str, users: int | None,
                       rate_per_s: float | None, ttft_slo_s: float | None, tpot_slo_s: float | None
                       ) -> list[CurveAnswer]:
    """Every measured configuration's answer at the load, those meeting the SLO first, then by J/request."""
    if (users is None) == (rate_per_s is None):
        raise ValueError("give exactly one of users or rate_per_s")
    mode, load = ("closed", float(users)) if users is not None else ("open", float(rate_per_s or 0.0))
    answers = [curve_at(points, load, ttft_slo_s, tpot_slo_s)
               for points in matching_curves(frame, scenario, hardware_key, mode).values()]
    return sorted(answers, key=lambda a: (not a.meets_slo, a.how == "unservable",
                                          a.energy_per_request_j if math.isfinite(a.energy_per_request_j) else math.inf))


def _content_digest(frame: pd.DataFrame) -> str | None:
    """sha256 of the rows and column names; None for values pandas cannot hash (such rows are always checked)."""
    try:
        rows = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    except TypeError:
        return None
    return hashlib.sha256(rows + "\x1f".join(map(str, frame.columns)).encode()).hexdigest()


def _check_once(frame: pd.DataFrame, source: str) -> None:
    """Load-point rows checked against schemas/load_points.yaml once per content: the digest of rows that passed
    is marked under $WATTCOUNTS_HOME/cache, so `wattcounts recommend` does not import and run Pandera on this
    machine's unchanged sweeps on every call (about 0.5 s). Bad rows raise, naming the row and field."""
    digest = _content_digest(frame)
    marks = paths.subdir("cache", "valid_load_points")
    if digest is not None and (marks / digest).exists():
        return
    from wattcounts_pipeline.core.validation import validate_table

    checked = validate_table("load_points", frame, source=source)
    if not checked.ok:
        raise SpecError("load curves break schemas/load_points.yaml: " + "; ".join(checked.quarantine["reason"].head(3)))
    if digest is not None:
        (marks / digest).touch()


def measured_answers(source: Path | None, scenario: str, hardware_key: str, users: int | None,
                     rate_per_s: float | None, ttft_slo_s: float | None, tpot_slo_s: float | None
                     ) -> list[CurveAnswer]:
    """`answer_from_curves` over the load points under `source`, by default this machine's sweeps
    ($WATTCOUNTS_HOME/serving) and the GPU sweeps shipped with the package (serving/data/, recorded on lent GPU
    hosts; a sweep of the same key and machine measured here replaces its shipped one). A `source` given that does
    not exist is an error."""
    from wattcounts_pipeline.serving.store import SHIPPED, merge_load_points, read_load_points

    frame = read_load_points(source)
    if not frame.empty:  # bad rows are named, never read as a curve
        _check_once(frame, str(source or "$WATTCOUNTS_HOME/serving"))
    if source is None and SHIPPED.is_file():  # validated as shipped (scripts/ship_predictor.py, and a test): importing
        frame = merge_load_points(frame, read_load_points(SHIPPED))  # Pandera for it would cost 0.3 s a call
    return answer_from_curves(frame, scenario, hardware_key, users, rate_per_s, ttft_slo_s, tpot_slo_s)


def setup_key(answer: CurveAnswer) -> tuple[str, str, str] | None:
    """(catalog architecture, quantization key, framework) of an answer, as the predictor's candidates and quality
    table name setups; None for a model the catalog does not know."""
    from wattcounts_pipeline.model.catalog import get_architecture
    from wattcounts_pipeline.model.features import quantization_key

    try:
        return get_architecture(answer.model, answer.architecture).key, quantization_key(answer.quantization), \
            answer.framework
    except WattCountsError:
        return None


def measured_setups(answers: list[CurveAnswer]) -> set[tuple[str, str, str]]:
    """The setups of the answered configurations: the predictor leaves these."""
    return {key for a in answers if (key := setup_key(a)) is not None}


def with_quality(answers: list[CurveAnswer], known: pd.DataFrame, trusted: tuple[str, ...],
                 min_quality: float | None) -> list[CurveAnswer]:
    """The answers with their setup's known quality (the predictor's table: measured, published or derived, from
    the `trusted` sources), held to `min_quality`, those meeting both the SLO and the floor first. A curve measures
    speed and energy only: a setup without a known quality cannot meet a floor."""
    from dataclasses import replace

    table = known[known["quality_source"].isin(trusted)] if not known.empty else known
    lookup: dict[tuple[str, str, str] | None, tuple[float | None, str | None]] = {} if table.empty else {
        (r.architecture, r.quantization, r.framework): (float(r.quality_acc_mean), str(r.quality_source))
        for r in table.itertuples()}
    out = []
    for a in answers:
        value, source = lookup.get(setup_key(a), (None, None))
        meets = min_quality is None or (value is not None and value >= min_quality)
        out.append(replace(a, quality_acc_mean=value, quality_source=source, meets_quality=meets))
    return sorted(out, key=lambda a: not (a.meets_slo and a.meets_quality))


def describe_answers(answers: list[CurveAnswer], load_text: str, min_quality: float | None = None) -> list[str]:
    """The lines `wattcounts recommend` prints for the measured answers (best first)."""
    floor = f"; quality ≥ {min_quality:g} from the setup's known quality" if min_quality is not None else ""
    lines = [(f"From measured load curves at {load_text} ({len(answers)} configuration(s); SLO on p90 TTFT and TPOT"
              f"{floor}):")]
    for a in answers:
        tpot = "—" if a.tpot_p90_s is None else f"{a.tpot_p90_s:.3g} s"
        quality = (f"quality {a.quality_acc_mean:.3g} ({a.quality_source})" if a.quality_acc_mean is not None
                   else "quality unknown")
        if min_quality is not None and not a.meets_quality:
            quality += " below the floor" if a.quality_acc_mean is not None else " (cannot meet the floor)"
        lines.append(f"  {a.model} {a.quantization} on {a.framework} ({a.server}, {a.slots} slot(s)) on {a.hardware_id}: "
                     f"{a.energy_per_request_j:.4g} J/request, {a.energy_per_output_token_j:.4g} J/output token, "
                     f"{a.achieved_rate_per_s:.3g} requests/s, p90 TTFT {a.ttft_p90_s:.3g} s, p90 TPOT {tpot}, "
                     f"SLO {'met' if a.meets_slo else 'not met'}, {quality} — "
                     f"{a.note if a.note.startswith(a.how) else f'{a.how}: {a.note}'} [sweep {a.sweep_id}]")
    return lines
