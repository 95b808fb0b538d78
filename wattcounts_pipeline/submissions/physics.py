"""Physics a contributed run must obey whatever optional fields it leaves out.

`validate_table` checks what our own meters write; a stranger's rows can be internally consistent and still
impossible: energy below what the machine draws idle, a 700 W card averaging 1,400 W because the row left
its power limit empty, 3 kW "measured" by RAPL, energy in Wh or kJ labelled J (an H100 at 0.4 W), a million
tokens a second, requests of lengths the spec never asked for. Every bound here is generous for real hardware
and taken from the hardware catalog where the card is known; each failure names file, row and field.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.specs import ExperimentSpec
from wattcounts_pipeline.model.catalog import get_hardware
from wattcounts_pipeline.model.errors import CatalogError
from wattcounts_pipeline.submissions.manifest import SOURCE as MANIFEST
from wattcounts_pipeline.submissions.manifest import Manifest
from wattcounts_pipeline.submissions.tables import show

UNKNOWN_GPU_TDP_W = 1500.0  # a card the catalog does not know: above any accelerator's board power today
LIMIT_OVER_TDP = 1.5  # a power limit raised this far above the datasheet's is a typo or a lie
POWER_TOL = 1.1  # mean power may exceed the enforced limit by 10% (NVML averaging, transients)
TRACE_TOL = 1.5  # one power sample may spike further than a window's mean
MIN_GPU_SHARE = 0.05  # a GPU running a model draws at least 5% of its TDP (an H100 idles near 70 W of 700)
MIN_HOST_W = 0.5  # below this the energy was not in joules (Wh or kJ passed off as J)
MAX_CPU_DRAM_W = 1500.0  # CPU packages + DRAM of the largest multi-socket server
IDLE_TOL = 0.1  # gross energy may dip 10% below idle power x duration (noise), not further
MAX_TOKENS_PER_S_PER_GPU = 100_000.0  # our fastest H200 row: 14k tokens/s
MAX_TOKENS_PER_S_CPU = 20_000.0
REL_TOL = 0.01
TRACE_DOMAIN = re.compile(r"^(gpu|cpu|dram|total)(:[A-Za-z0-9_.-]{1,32})?$")


def card_tdp_w(gpu_name: Any, declared_w: float | None = None) -> float:
    """The catalog's board power of a GPU; for a card it does not know, the manifest's `hardware.gpu_tdp_w`
    (`declared_w`) where given, else a ceiling above any card."""
    unknown_w = float(declared_w) if isinstance(declared_w, (int, float)) else UNKNOWN_GPU_TDP_W
    if not isinstance(gpu_name, str) or not gpu_name:
        return unknown_w
    try:
        hardware = get_hardware(gpu_name)
    except CatalogError:
        return unknown_w
    return float(hardware.tdp_w) if hardware.is_gpu else unknown_w


def physics_reasons(manifest: Manifest, tables: dict[str, pd.DataFrame], files: dict[str, str]) -> list[str]:
    """Every physical impossibility in a bundle's validated tables."""
    runs = tables["runs"]
    declared_tdp_w = manifest.doc["hardware"].get("gpu_tdp_w")
    reasons = _run_reasons(manifest, runs, files["runs"])
    reasons += _token_reasons(manifest, runs, tables["requests"], files["runs"], files["requests"])
    if "power_traces" in tables:
        reasons += _trace_reasons(runs, tables["power_traces"], files["power_traces"], declared_tdp_w)
    return reasons


def _gpu_limit_w(runs: pd.DataFrame, declared_tdp_w: float | None = None) -> pd.Series:
    """Per-GPU power limit of each row: its own when given (capped at a plausible raise), else the card's TDP."""
    tdp = runs["gpu_name"].map(lambda name: card_tdp_w(name, declared_tdp_w)).astype(float)
    own = pd.to_numeric(runs["gpu_power_limit_w"], errors="coerce")
    return own.where(own.notna(), tdp).clip(upper=tdp * LIMIT_OVER_TDP)


def _run_reasons(manifest: Manifest, runs: pd.DataFrame, runs_file: str) -> list[str]:
    hardware = manifest.doc["hardware"]
    duration = runs["duration_s"]
    gpus = runs["gpu_count"].clip(lower=0)
    declared_tdp_w = hardware.get("gpu_tdp_w")
    tdp = runs["gpu_name"].map(lambda name: card_tdp_w(name, declared_tdp_w)).astype(float)
    limit = _gpu_limit_w(runs, declared_tdp_w)
    gpu_j = pd.to_numeric(runs["gpu_energy_j"], errors="coerce")
    domains_j = sum(pd.to_numeric(runs[c], errors="coerce").fillna(0.0)
                    for c in ("gpu_energy_j", "cpu_energy_j", "dram_energy_j"))
    gpu_w = gpu_j / duration
    host_w = (runs["energy_j"] - gpu_j.fillna(0.0)) / duration
    on_gpu = gpus > 0
    checks: list[tuple[pd.Series, str, str]] = [
        (runs["energy_j"] <= 0, "energy_j", "is not positive: a measured window uses energy"),
        (runs["energy_j"] < (1 - IDLE_TOL) * runs["idle_power_w"] * duration, "energy_j",
         "is below idle_power_w x duration_s: the machine draws more than that doing nothing"),
        (domains_j > runs["energy_j"] * (1 + REL_TOL), "energy_j",
         "is less than gpu_energy_j + cpu_energy_j + dram_energy_j"),
        (on_gpu & (gpu_w > POWER_TOL * limit * gpus), "gpu_energy_j",
         "GPU mean power above 1.1 x the card's power limit x GPUs (catalog TDP where the row gives none)"),
        (on_gpu & gpu_j.isna() & (runs["mean_power_w"] > POWER_TOL * limit * gpus + MAX_CPU_DRAM_W), "mean_power_w",
         "above what its GPUs (at the card's power limit) and one host can draw"),
        (on_gpu & (runs["mean_power_w"] < MIN_GPU_SHARE * tdp * gpus), "mean_power_w",
         "too low for a running GPU: was energy given in Wh or kJ instead of J?"),
        (runs["mean_power_w"] < MIN_HOST_W, "mean_power_w",
         "too low for a running machine: was energy given in Wh or kJ instead of J?"),
        (host_w > MAX_CPU_DRAM_W, "energy_j",
         (f"energy outside the GPUs averages more than {MAX_CPU_DRAM_W:g} W, beyond any CPU and DRAM "
         "(RAPL or estimate)")),
        (pd.to_numeric(runs["gpu_power_limit_w"], errors="coerce") > tdp * LIMIT_OVER_TDP, "gpu_power_limit_w",
         f"more than {LIMIT_OVER_TDP:g} x the card's TDP in the hardware catalog"),
        (runs["tokens_per_s"] > np.where(on_gpu, MAX_TOKENS_PER_S_PER_GPU * gpus, MAX_TOKENS_PER_S_CPU),
         "tokens_per_s", (f"beyond any hardware ({MAX_TOKENS_PER_S_PER_GPU:g} per GPU, "
         f"{MAX_TOKENS_PER_S_CPU:g} on CPU)")),
    ]
    reasons = []
    declared = hardware.get("gpu_power_limit_w")
    if isinstance(declared, (int, float)):
        row_limit = pd.to_numeric(runs["gpu_power_limit_w"], errors="coerce")
        checks.append((on_gpu & row_limit.notna() & ((row_limit - declared).abs() > REL_TOL * declared),
                       "gpu_power_limit_w", f"differs from {MANIFEST} hardware.gpu_power_limit_w ({declared:g})"))
        card_w = card_tdp_w(hardware.get("gpu_name"), declared_tdp_w)
        if declared > card_w * LIMIT_OVER_TDP:
            reasons.append(f"{MANIFEST}: field hardware.gpu_power_limit_w: {declared:g} W is more than "
                           f"{LIMIT_OVER_TDP:g} x the card's TDP in the hardware catalog ({card_w:g} W)")
    for mask, column, text in checks:
        for row in np.flatnonzero(mask.fillna(False).to_numpy(dtype=bool)):
            reasons.append(f"{runs_file}: row {row}, field {column}: {show(runs[column].iat[row])} {text}")
    return reasons


def _spec_tokens(specs: dict[str, ExperimentSpec]) -> pd.DataFrame:
    return pd.DataFrame([{"configuration_id": key, "spec_input": s.workload.input_tokens,
                          "spec_output": s.workload.output_tokens, "exact_input": s.workload.kind == "fixed"}
                         for key, s in specs.items()], columns=["configuration_id", "spec_input", "spec_output",
                                                               "exact_input"])


def _token_reasons(manifest: Manifest, runs: pd.DataFrame, requests: pd.DataFrame, runs_file: str,
                   requests_file: str) -> list[str]:
    """Requests carry the lengths their spec asked for: fixed prompts exactly, outputs never longer."""
    merged = requests.reset_index(names="row").merge(_spec_tokens(manifest.specs), on="configuration_id")
    reasons = []
    rules = [
        (merged["exact_input"] & (merged["input_tokens"] != merged["spec_input"]), "input_tokens",
         "differs from its spec's workload.input_tokens"),
        (merged["input_tokens"] > merged["spec_input"], "input_tokens", "exceeds its spec's workload.input_tokens"),
        (merged["output_tokens"] > merged["spec_output"], "output_tokens",
         "exceeds its spec's workload.output_tokens"),
    ]
    for mask, column, text in rules:
        for rec in merged.loc[mask.to_numpy(dtype=bool), ["row", column, "spec_input", "spec_output"]].itertuples():
            wanted = rec.spec_input if column == "input_tokens" else rec.spec_output
            reasons.append(f"{requests_file}: row {rec.row}, field {column}: {show(getattr(rec, column))} {text} "
                           f"({wanted})")
    return list(dict.fromkeys(reasons))


def _trace_reasons(runs: pd.DataFrame, traces: pd.DataFrame, traces_file: str,
                   declared_tdp_w: float | None = None) -> list[str]:
    """Samples in a known domain and below what that domain of the run's hardware can draw."""
    reasons = []
    domain = traces["domain"].astype(str)
    bad_domain = ~domain.str.match(TRACE_DOMAIN)
    for row in np.flatnonzero(bad_domain.to_numpy(dtype=bool)):
        reasons.append(f"{traces_file}: row {row}, field domain: {show(traces['domain'].iat[row])} is not gpu, cpu, "
                       "dram or total (optionally ':<device>')")
    per_run = runs.assign(limit_w=_gpu_limit_w(runs, declared_tdp_w)).set_index("run_id")[["gpu_count", "limit_w"]]
    joined = traces[["run_id"]].join(per_run, on="run_id")  # unknown runs are consistency's to report
    gpu_all_w = TRACE_TOL * joined["limit_w"] * joined["gpu_count"].clip(lower=0)
    kind = domain.str.split(":", n=1).str[0]
    one_device = domain.str.contains(":", regex=False)
    ceiling = np.select(
        [kind == "gpu", kind == "total"],
        [np.where(one_device, TRACE_TOL * joined["limit_w"], gpu_all_w), gpu_all_w + MAX_CPU_DRAM_W],
        default=MAX_CPU_DRAM_W)
    over = (traces["power_w"].to_numpy() > ceiling) & joined["gpu_count"].notna().to_numpy() & ~bad_domain.to_numpy()
    for row in np.flatnonzero(over):
        reasons.append(f"{traces_file}: row {row}, field power_w: {show(traces['power_w'].iat[row])} beyond what "
                       f"domain {domain.iat[row]!r} of the run's hardware can draw ({ceiling[row]:g} W)")
    return reasons
