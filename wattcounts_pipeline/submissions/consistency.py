"""Provenance checks across a bundle's files: do the rows measure what the manifest says, on what it says?

Row-level contracts (validate_table) see one table at a time; a contributed bundle must also hang together:
every run measures a declared spec on the declared hardware, every request and trace belongs to a run and
adds up to it, and no power reading exceeds what the declared machine can physically draw.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.specs import ExperimentSpec
from wattcounts_pipeline.submissions.manifest import SOURCE as MANIFEST
from wattcounts_pipeline.submissions.manifest import Manifest, parse_utc
from wattcounts_pipeline.submissions.tables import show

MAX_GPU_POWER_W = 1500.0  # above any accelerator's board power today
HOST_POWER_W = 3000.0  # CPUs, DRAM, fans and disks of one server
REL_TOL = 0.01
# run columns that must equal what the run's spec says; num_requests may be a whole multiple of the spec's (a
# window repeats a short workload until it lasts min_window_s) and engine_args_json may add keys to the spec's
# (the engine's resolved defaults, which the pipeline records), as the pipeline's own rows do
SPEC_COLUMNS = ("experiment", "model", "weights", "quantization", "framework", "dtype", "workload",
                "workload_kind", "batch_size", "num_requests", "engine_args_json")
_LOOSE = ("num_requests", "engine_args_json")


def consistency_reasons(manifest: Manifest, tables: dict[str, pd.DataFrame], files: dict[str, str]) -> list[str]:
    """Every cross-file inconsistency, each naming the file, row (or run) and field."""
    runs, requests = tables["runs"], tables["requests"]
    reasons = _spec_reasons(manifest, runs, files["runs"])
    reasons += _hardware_reasons(manifest.doc["hardware"], runs, files["runs"])
    reasons += _request_reasons(runs, requests, files["runs"], files["requests"])
    if "power_traces" in tables:
        reasons += _trace_reasons(runs, tables["power_traces"], files["runs"], files["power_traces"])
    return reasons


def _spec_row(spec: ExperimentSpec) -> dict[str, Any]:
    w = spec.workload
    return {"configuration_id": spec.key, "experiment": spec.experiment, "model": spec.model.name,
            "weights": spec.model.weights, "quantization": spec.quantization, "framework": spec.framework,
            "dtype": spec.dtype, "workload": w.name, "workload_kind": w.kind, "batch_size": w.batch_size,
            "num_requests": w.num_requests, "engine_args_json": _canonical(spec.engine_kwargs),
            "min_window_s": spec.min_window_s}


def _canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)


def _spec_reasons(manifest: Manifest, runs: pd.DataFrame, runs_file: str) -> list[str]:
    reasons = []
    known = runs["configuration_id"].isin(list(manifest.specs))
    for row in np.flatnonzero(~known.to_numpy()):
        reasons.append(f"{runs_file}: row {row}, field configuration_id: {show(runs['configuration_id'].iat[row])} "
                       f"matches no spec key in {MANIFEST}")
    for i, key in enumerate(manifest.specs):
        if not (runs["configuration_id"] == key).any():
            reasons.append(f"{MANIFEST}: field specs[{i}]: no row of {runs_file} measures configuration {key}")
    expected = pd.DataFrame([_spec_row(s) for s in manifest.specs.values()])
    measured = runs[list(SPEC_COLUMNS)].astype(object).assign(configuration_id=runs["configuration_id"])
    texts = measured["engine_args_json"]
    measured["engine_args_json"] = texts.map({t: _canonical_json_text(t) for t in texts.unique()})
    merged = measured.reset_index(names="row").merge(expected, on="configuration_id", suffixes=("", "_spec"))
    for column in SPEC_COLUMNS:
        differs = merged[column].astype(str) != merged[f"{column}_spec"].astype(str)
        if column in _LOOSE and differs.any():
            differs &= ~merged.apply(_LOOSE_OK[column], axis=1).astype(bool)
        for rec in merged.loc[differs, ["row", "configuration_id", column, f"{column}_spec"]].itertuples(index=False):
            reasons.append(f"{runs_file}: row {rec[0]}, field {column}: {rec[2]!r} differs from the spec's "
                           f"{rec[3]!r} (configuration {rec[1]})")
    return reasons


def _repeated_workload(rec: pd.Series) -> bool:
    """A window that repeated its workload: a whole multiple of the spec's requests, where the spec has a window."""
    n, spec_n = int(rec["num_requests"]), int(rec["num_requests_spec"])
    return bool(rec["min_window_s"]) and n > spec_n and n % spec_n == 0


def _engine_defaults_added(rec: pd.Series) -> bool:
    """Every engine argument the spec sets holds its value in the row (which may add resolved defaults)."""
    try:
        row, spec = json.loads(rec["engine_args_json"]), json.loads(rec["engine_args_json_spec"])
    except (TypeError, ValueError):
        return False
    return isinstance(row, dict) and isinstance(spec, dict) and all(k in row and row[k] == v for k, v in spec.items())


_LOOSE_OK = {"num_requests": _repeated_workload, "engine_args_json": _engine_defaults_added}


def _canonical_json_text(text: str) -> str:
    try:
        return _canonical(json.loads(text))
    except (TypeError, ValueError):
        return f"not valid JSON: {text}"


def _hardware_reasons(hardware: dict[str, Any], runs: pd.DataFrame, runs_file: str) -> list[str]:
    reasons = []
    checks = [
        (runs["gpu_count"] > hardware["gpu_count"], "gpu_count",
         f"uses more GPUs than {MANIFEST} hardware.gpu_count ({hardware['gpu_count']})"),
        ((runs["gpu_count"] > 0) & (runs["gpu_name"] != hardware.get("gpu_name")).fillna(True), "gpu_name",
         f"differs from {MANIFEST} hardware.gpu_name ({hardware.get('gpu_name')!r})"),
        (runs["cpu_model"] != hardware["cpu_model"], "cpu_model",
         f"differs from {MANIFEST} hardware.cpu_model ({hardware['cpu_model']!r})"),
        (runs["cpu_count"] > hardware["cpu_count"], "cpu_count",
         f"more CPUs than {MANIFEST} hardware.cpu_count ({hardware['cpu_count']})"),
        (runs["energy_method"] == "replay", "energy_method", "is for tests; submit measured energy"),
    ]
    ceiling_w = runs["gpu_count"] * runs["gpu_power_limit_w"].fillna(MAX_GPU_POWER_W).clip(upper=MAX_GPU_POWER_W) \
        * (1 + 10 * REL_TOL) + HOST_POWER_W
    checks.append((runs["mean_power_w"] > ceiling_w, "mean_power_w",
                   "beyond the physical ceiling of its GPUs plus one host"))
    moments = {t: parse_utc(t) for t in runs["started_at"].unique()}  # strict: 2025-13-45T25:61:61Z is no date
    started = runs["started_at"].map(moments)
    checks.append((started.isna(), "started_at", "is not a real ISO-8601 date and time"))
    future = datetime.now(UTC) + timedelta(days=1)
    checks.append((started.map(lambda m: m is not None and m > future), "started_at", "lies in the future"))
    first_hardware = runs.groupby("configuration_id")["hardware_id"].transform("first")
    checks.append((runs["hardware_id"] != first_hardware, "hardware_id",
                   "differs from that of an earlier run of the same configuration: one configuration, one machine"))
    for mask, column, text in checks:
        for row in np.flatnonzero(mask.to_numpy(dtype=bool)):
            reasons.append(f"{runs_file}: row {row}, field {column}: {show(runs[column].iat[row])} {text}")
    return reasons


def _request_reasons(runs: pd.DataFrame, requests: pd.DataFrame, runs_file: str, requests_file: str) -> list[str]:
    reasons = []
    by_run = runs.reset_index(names="run_row").set_index("run_id")
    known = requests["run_id"].isin(by_run.index)
    for row in np.flatnonzero(~known.to_numpy()):
        reasons.append(f"{requests_file}: row {row}, field run_id: {show(requests['run_id'].iat[row])} "
                       f"is no run of {runs_file}")
    own = requests.reset_index(names="row")[known.to_numpy()]
    wrong = own["configuration_id"].to_numpy() != by_run.loc[own["run_id"], "configuration_id"].to_numpy()
    for rec in own.loc[wrong, ["row", "configuration_id", "run_id"]].itertuples(index=False):
        reasons.append(f"{requests_file}: row {rec[0]}, field configuration_id: {rec[1]!r} differs from that "
                       f"of run {rec[2]!r}")
    sums = own.assign(end_s=own["start_s"] + own["e2e_s"]).groupby("run_id").agg(
        n=("row", "size"), input_tokens_req=("input_tokens", "sum"), output_tokens_req=("output_tokens", "sum"),
        energy_j_req=("energy_j", "sum"), end_s=("end_s", "max"))
    joined = by_run.join(sums)
    rules = [
        (joined["n"].isna(), "run_id", lambda r: f"has no request in {requests_file}"),
        (joined["n"] != joined["num_requests"], "num_requests",
         lambda r: f"{r.num_requests} but {requests_file} holds {r.n:g} requests of this run"),
        (joined["input_tokens_req"] != joined["input_tokens_total"], "input_tokens_total",
         lambda r: f"{r.input_tokens_total} but {requests_file} sums input_tokens to {r.input_tokens_req:g}"),
        (joined["output_tokens_req"] != joined["output_tokens_total"], "output_tokens_total",
         lambda r: f"{r.output_tokens_total} but {requests_file} sums output_tokens to {r.output_tokens_req:g}"),
        (joined["energy_j_req"] > joined["energy_j"] * (1 + REL_TOL), "energy_j",
         lambda r: f"{r.energy_j:g} but {requests_file} attributes {r.energy_j_req:g} J to its requests"),
        (joined["end_s"] > joined["duration_s"] * (1 + REL_TOL) + 0.05, "duration_s",
         lambda r: f"{r.duration_s:g} s but a request in {requests_file} ends at {r.end_s:g} s"),
    ]
    has_requests = joined["n"].notna()
    for mask, column, text in rules:
        mask = mask if column == "run_id" else mask & has_requests
        for run_id, rec in joined[mask.to_numpy(dtype=bool)].iterrows():
            reasons.append(f"{runs_file}: row {rec.run_row} (run {run_id!r}), field {column}: {text(rec)}")
    return reasons


def _trace_reasons(runs: pd.DataFrame, traces: pd.DataFrame, runs_file: str, traces_file: str) -> list[str]:
    reasons = []
    by_run = runs.set_index("run_id")
    known = traces["run_id"].isin(by_run.index).to_numpy()
    for row in np.flatnonzero(~known):
        reasons.append(f"{traces_file}: row {row}, field run_id: {show(traces['run_id'].iat[row])} "
                       f"is no run of {runs_file}")
    own = traces.reset_index(names="row")[known]
    run = by_run.loc[own["run_id"]]
    gpu_ceiling = run["gpu_count"].to_numpy() * MAX_GPU_POWER_W
    ceiling = np.where(own["domain"].to_numpy() == "gpu", gpu_ceiling, gpu_ceiling + HOST_POWER_W)
    for mask, column, text in [
        (own["power_w"].to_numpy() > ceiling, "power_w", "beyond what the run's hardware can draw in that domain"),
        (own["t_s"].to_numpy() > run["duration_s"].to_numpy() * (1 + REL_TOL) + 1.0, "t_s",
         "after the end of the run's window"),
    ]:
        for row in own["row"].to_numpy()[mask]:
            reasons.append(f"{traces_file}: row {row}, field {column}: {show(traces[column].iat[row])} {text}")
    return reasons
