"""A small fitted performance model: time from launch overhead and the roofline, energy as power × time.

The roofline alone misses what dominates small-batch serving with an eager engine: every decode step launches a
few kernels per layer from Python, so a step costs `overhead per layer × (layers + n0)` even when the GPU would
be done far sooner (measured: batch-1 decode of anything from 0.5B to 8B parameters runs ≈ 50 tokens/s on an H200
with eager transformers). So, per run of `batch` prompts of `input` tokens answered with `output` tokens:

    overhead   = a · (layers + n0) + h · batch · vocab      (host time to launch one step and handle its logits)
    decode GPU = smax(decode bytes / (η_m · bandwidth), decode FLOPs / (η_c · peak))
    prefill GPU= smax(prefill bytes / (η_m · bandwidth), prefill FLOPs / (η_p · peak))
    TPOT       = (overhead^q + decode GPU^q)^(1/q)   TTFT = ((r · overhead)^q + prefill GPU^q)^(1/q)
    tokens/s   = batch · output / (TTFT + (output − 1) · TPOT)
    net energy = working TDP · (k_m · ideal memory seconds + k_c · ideal compute seconds) + TDP · k_t · run seconds
    gross      = net + idle power · run seconds                          (both per output token)

q between the overhead and the GPU time says how much they overlap (q = 1: not at all, q → ∞: fully); it
is the engine's: an eager engine queues kernels ahead of the GPU, a server loop waits on it (measured: eager
transformers decode at batch 1 takes about as long for 7B as for 1.5B of the same depth). h is the host's time
per logit of a step: llama-server copies each sequence's logits to the CPU and samples there, so its step
grows with batch × vocabulary (measured at batch 32: Mistral-7B, 32k vocabulary, 13-20 ms per token,
Llama-3.1-8B, 128k, 33-38 ms). Every rate, overhead and energy coefficient is a global value times a factor per
hardware and per engine setup (framework / mode); the factors are shrunk toward 1, so a setup or device the
training rows never saw gets the global value. η_m, the rate weights stream at, is the device's alone: how far
an engine falls short shows in its overhead and overlap, and with a per-engine η_m an engine whose steps are all
launch-bound (eager transformers below 14B) got whatever rate its few memory-bound rows gave it (Mixtral's
decode was then predicted 2.5x too slow with the largest architectures held out). The prefill terms (TTFT, and
the energy of the prefill's work and time) take the setup the prefill really runs on: an engine that captures
only its decode step prefills eagerly (`prefill_setup_labels`). The fit is least squares on log errors (scipy,
training only); the fitted numbers are plain JSON.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

FACTORS = ("hardware", "setup")
PLAIN_WEIGHTS = {"BF16", "F16", "FP16", "F32", "FP32"}
"""Weight formats that run the engine's plain matmuls; any other format on transformers runs kernels of its own
(FP8 linears, torchao, bitsandbytes), whose launch overhead and efficiency differ (eager FP8 decode measured
1.8x slower than bf16 on the same H200), so it is a setup of its own."""
PRIOR_WEIGHT = 0.3
"""Penalty weight on each log factor (per-row log errors have weight 1): a factor is pulled toward 1 unless
the rows it covers agree on moving it."""
MAX_NFEV_PER_PARAM = 100  # least-squares evaluations allowed per fitted parameter
SMOOTH_MAX_P = 4.0
IDLE_FRACTION_OF_TDP = 0.17
"""Idle power of a device never measured, as a fraction of its TDP: used only when no training row's device
gives a measured ratio."""

# name: (initial global value (log), factor groups it varies by)
TIME_PARAMS: dict[str, tuple[float, tuple[str, ...]]] = {
    "log_overhead_per_layer_s": (math.log(5e-4), ("hardware", "setup")),
    "log_overhead_layers0": (math.log(2.0), ()),
    "log_prefill_overhead_ratio": (0.0, ()),
    "logit_eta_memory": (math.log(0.7 / 0.3), ("hardware",)),
    "logit_eta_compute": (0.0, ("hardware", "setup")),
    "logit_eta_prefill": (0.0, ("hardware", "setup")),
    "log_q_minus_1": (0.0, ("setup",)),
    "log_host_s_per_logit": (math.log(1e-9), ("setup",)),
}
ENERGY_PARAMS: dict[str, tuple[float, tuple[str, ...]]] = {
    "log_k_memory": (math.log(0.3), ("hardware", "setup")),
    "log_k_compute": (math.log(0.3), ("hardware", "setup")),
    "log_k_time": (math.log(0.05), ("hardware", "setup")),
}
ANCHORS = {"tpot_p50_s": "phys_tpot_s", "ttft_p50_s": "phys_ttft_s", "tokens_per_s": "phys_tokens_per_s",
           "energy_per_token_net_j": "phys_energy_net_j", "energy_per_token_j": "phys_energy_j"}


@dataclass(frozen=True)
class Levels:
    """One factor's level per row, as the sorted distinct levels and each row's index into them.

    Why: the fit evaluates the model tens of thousands of times; looking each row's level up by name made
    those evaluations grow with rows × evaluations in Python, while an index is one numpy gather."""

    names: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray) -> Levels:
        names, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        return cls(names, codes)

    def __len__(self) -> int:
        return len(self.codes)


def setup_labels(feats: pd.DataFrame) -> np.ndarray:
    """framework/mode, plus the weight format where transformers runs it with kernels of its own."""
    setup = (feats["framework"].astype(str) + "/" + feats["mode"].astype(str)).to_numpy()
    quant = feats["quant_key"].astype(str).to_numpy()
    own_kernels = (feats["framework"].astype(str).to_numpy() == "transformers") & ~np.isin(quant, list(PLAIN_WEIGHTS))
    return np.where(own_kernels, np.char.add(np.char.add(setup.astype(str), "/"), quant), setup)


PREFILL_EAGER_FRAMEWORKS = ("transformers",)
"""Engines whose compiled mode captures only the one-token decode step, so their prefill runs eagerly:
backends/static_decode.py prefills eagerly before replaying the graphs, and `generate` with a static cache
compiles only the decode forward. Measured: compiled TTFT at batch 1 is eager-sized (24-43 ms for 0.5B-14B on
an H200) while compiled TPOT is 3-4x below eager."""


def prefill_setup_labels(feats: pd.DataFrame) -> np.ndarray:
    """`setup_labels` of the engine path each row's prefill runs on (eager for PREFILL_EAGER_FRAMEWORKS)."""
    eager = feats["framework"].astype(str).isin(PREFILL_EAGER_FRAMEWORKS).to_numpy()
    return setup_labels(feats.assign(mode=np.where(eager, "eager", feats["mode"].astype(str))))


@dataclass(frozen=True)
class Phases:
    """Each row's factor levels in decode and in prefill, over one vocabulary per factor (so a level seen only
    as some rows' prefill setup is still a fitted level)."""

    decode: dict[str, Levels]
    prefill: dict[str, Levels]

    @classmethod
    def of(cls, feats: pd.DataFrame) -> Phases:
        """Hardware and engine setup (`setup_labels`, `prefill_setup_labels`) of each row."""
        hardware = feats["hardware_key"].astype(str).to_numpy()
        return cls.of_labels({"hardware": hardware, "setup": setup_labels(feats)},
                             {"hardware": hardware, "setup": prefill_setup_labels(feats)})

    @classmethod
    def of_labels(cls, decode: dict[str, np.ndarray], prefill: dict[str, np.ndarray]) -> Phases:
        out_d, out_p = {}, {}
        for factor, labels in decode.items():
            names, codes = np.unique(np.concatenate([labels, prefill[factor]]).astype(str), return_inverse=True)
            out_d[factor], out_p[factor] = Levels(names, codes[:len(labels)]), Levels(names, codes[len(labels):])
        return cls(out_d, out_p)

    def take(self, mask: np.ndarray) -> Phases:
        """The levels of the rows in `mask` (only the levels those rows have, in either phase)."""
        return Phases.of_labels({k: v.names[v.codes[mask]] for k, v in self.decode.items()},
                                {k: v.names[v.codes[mask]] for k, v in self.prefill.items()})


@dataclass(frozen=True)
class ParamSet:
    """Global log values plus per-level log factors; `values` gives every row its own log value."""

    globals_: dict[str, float]
    factors: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # param -> factor -> level -> δ

    def values(self, name: str, levels: dict[str, Levels]) -> np.ndarray:
        n = len(next(iter(levels.values())))
        out = np.full(n, self.globals_[name])
        for factor, deltas in self.factors.get(name, {}).items():
            lv = levels[factor]
            out = out + np.array([deltas.get(level, 0.0) for level in lv.names])[lv.codes]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"globals": self.globals_, "factors": self.factors}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParamSet:
        return cls(globals_={k: float(v) for k, v in data["globals"].items()},
                   factors={p: {f: {lvl: float(d) for lvl, d in levels.items()} for f, levels in fs.items()}
                            for p, fs in data["factors"].items()})


def _smax(a: np.ndarray, b: np.ndarray, p: np.ndarray | float) -> np.ndarray:
    """Smooth maximum (a^p + b^p)^(1/p), computed in logs so tiny and huge times do not under/overflow."""
    la, lb = np.log(a), np.log(b)
    m = np.maximum(la, lb)
    return np.exp(m + np.log(np.exp(p * (la - m)) + np.exp(p * (lb - m))) / p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """An efficiency in (0, 1) from an unbounded parameter: no engine beats the roofline."""
    return 1.0 / (1.0 + np.exp(-x))


COLUMNS = ("num_layers", "batch_size", "output_tokens", "logits_per_step", "tdp_w", "working_tdp_w", "decode_memory_s",
           "decode_compute_s", "prefill_memory_s", "prefill_compute_s")


def feature_arrays(feats: pd.DataFrame) -> dict[str, np.ndarray]:
    """The feature columns the physics reads, as float arrays.

    Why: the fit evaluates the model tens of thousands of times; reading pandas columns in each evaluation
    cost more than the arithmetic."""
    return {c: feats[c].to_numpy(float) for c in COLUMNS}


def predict_times(params: ParamSet, feats: dict[str, np.ndarray], phases: Phases) -> dict[str, np.ndarray]:
    """TPOT with the decode setup's parameters, TTFT with the prefill setup's (`Phases`)."""
    v = {name: params.values(name, phases.decode) for name in TIME_PARAMS}
    w = {name: params.values(name, phases.prefill) for name in TIME_PARAMS}
    layers = feats["num_layers"]
    overhead = (np.exp(v["log_overhead_per_layer_s"]) * (layers + np.exp(v["log_overhead_layers0"]))
                + np.exp(v["log_host_s_per_logit"]) * feats["logits_per_step"])
    prefill_overhead = (np.exp(w["log_overhead_per_layer_s"] + w["log_prefill_overhead_ratio"])
                        * (layers + np.exp(w["log_overhead_layers0"]))
                        + np.exp(w["log_host_s_per_logit"]) * feats["logits_per_step"])
    eta_m, eta_c = (_sigmoid(v[f"logit_eta_{k}"]) for k in ("memory", "compute"))
    eta_pm, eta_p = (_sigmoid(w[f"logit_eta_{k}"]) for k in ("memory", "prefill"))
    decode = _smax(feats["decode_memory_s"] / eta_m, feats["decode_compute_s"] / eta_c, SMOOTH_MAX_P)
    prefill = _smax(feats["prefill_memory_s"] / eta_pm, feats["prefill_compute_s"] / eta_p, SMOOTH_MAX_P)
    tpot = _smax(overhead, decode, 1.0 + np.exp(v["log_q_minus_1"]))
    ttft = _smax(prefill_overhead, prefill, 1.0 + np.exp(w["log_q_minus_1"]))
    batch, n_out = feats["batch_size"], feats["output_tokens"]
    run_s = ttft + np.maximum(n_out - 1, 0) * tpot
    return {"tpot": tpot, "ttft": ttft, "run_s": run_s, "tokens_per_s": batch * n_out / run_s}


def _net_energy(params: ParamSet, feats: dict[str, np.ndarray], phases: Phases,
                times: dict[str, np.ndarray]) -> np.ndarray:
    """Idle-subtracted energy per output token (J): the prefill's work and time at the prefill setup's
    coefficients, the decode steps' at the decode setup's. Work (ideal memory and compute seconds) costs the
    TDP of the devices doing it (`working_tdp_w`), so a byte or FLOP costs the same however the model is
    split; run time costs the TDP of every device the model occupies."""
    v = {name: np.exp(params.values(name, phases.decode)) for name in ENERGY_PARAMS}
    w = {name: np.exp(params.values(name, phases.prefill)) for name in ENERGY_PARAMS}
    steps = np.maximum(feats["output_tokens"] - 1, 0)
    work = (w["log_k_memory"] * feats["prefill_memory_s"] + w["log_k_compute"] * feats["prefill_compute_s"]
            + steps * (v["log_k_memory"] * feats["decode_memory_s"] + v["log_k_compute"] * feats["decode_compute_s"]))
    run = w["log_k_time"] * times["ttft"] + steps * v["log_k_time"] * times["tpot"]
    joules = feats["working_tdp_w"] * work + feats["tdp_w"] * run
    return joules / (feats["batch_size"] * feats["output_tokens"])


def _fit_params(spec: dict[str, tuple[float, tuple[str, ...]]], levels: dict[str, Levels],
                residuals: Any, init: dict[str, float] | None = None) -> ParamSet:
    """Least squares over the globals and the shrunk factors of `spec`; `residuals(ParamSet)` gives log errors."""
    from scipy.optimize import least_squares  # training only

    names = list(spec)
    slots: list[tuple[str, str | None, str | None]] = [(n, None, None) for n in names]
    for n in names:
        for factor in spec[n][1]:
            slots += [(n, factor, str(level)) for level in levels[factor].names]
    x0 = np.array([(init or {}).get(n, spec[n][0]) if f is None else 0.0 for n, f, _ in slots])
    is_factor = np.array([f is not None for _, f, _ in slots])

    def unpack(x: np.ndarray) -> ParamSet:
        globals_: dict[str, float] = {}
        factors: dict[str, dict[str, dict[str, float]]] = {}
        for (n, f, level), value in zip(slots, x, strict=True):
            if f is None:
                globals_[n] = float(value)
            else:
                factors.setdefault(n, {}).setdefault(f, {})[str(level)] = float(value)
        return ParamSet(globals_, factors)

    def objective(x: np.ndarray) -> np.ndarray:
        r = residuals(unpack(x))
        return np.concatenate([np.where(np.isfinite(r), r, 10.0), PRIOR_WEIGHT * x[is_factor]])

    # Tolerances of 1e-6 on log errors are far below measurement noise; without them a data set the model
    # fits badly (a 70B split over 4 GPUs, an eager MoE) crawls to the evaluation cap for minutes.
    result = least_squares(objective, x0, loss="soft_l1", f_scale=0.3, max_nfev=MAX_NFEV_PER_PARAM * len(x0),
                           ftol=1e-6, xtol=1e-6, x_scale=1.0,
                           bounds=(np.full(len(x0), -30.0), np.full(len(x0), 30.0)))
    if result.status == 0:
        logger.warning("physics fit stopped at its evaluation cap (%d): %s", MAX_NFEV_PER_PARAM * len(x0),
                       result.message)
    return unpack(result.x)


def _log_target(rows: pd.DataFrame, column: str) -> np.ndarray:
    y = pd.to_numeric(rows[column], errors="coerce").to_numpy(float) if column in rows else np.full(len(rows), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(y) & (y > 0), np.log(np.where(y > 0, y, 1.0)), np.nan)


@dataclass(frozen=True)
class Physics:
    """Fitted time and energy parameters plus each measured device's idle power as a fraction of its TDP."""

    time: ParamSet
    energy: ParamSet | None
    idle_fraction: dict[str, float]
    idle_fraction_default: float

    def anchors(self, feats: pd.DataFrame) -> pd.DataFrame:
        """The physics prediction of every target, one `phys_*` column each (see ANCHORS)."""
        phases, cols = Phases.of(feats), feature_arrays(feats)
        t = predict_times(self.time, cols, phases)
        out = {"phys_tpot_s": t["tpot"], "phys_ttft_s": t["ttft"], "phys_tokens_per_s": t["tokens_per_s"]}
        if self.energy is not None:
            net = _net_energy(self.energy, cols, phases, t)
            fraction = np.array([self.idle_fraction.get(h, self.idle_fraction_default)
                                 for h in feats["hardware_key"]])
            idle_w = fraction * cols["tdp_w"]
            tokens = cols["batch_size"] * cols["output_tokens"]
            out |= {"phys_energy_net_j": net, "phys_energy_j": net + idle_w * t["run_s"] / tokens}
        else:
            nan = np.full(len(feats), np.nan)
            out |= {"phys_energy_net_j": nan, "phys_energy_j": nan}
        return pd.DataFrame(out, index=feats.index)

    def bounds(self, feats: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per target, the (lowest, highest) value physics allows on each row: no run beats the roofline (TTFT
        and TPOT at least its prefill and step time, tokens/s at most what those allow) and no run costs less
        gross energy than the device's idle power over that roofline time. Predictions are clipped to these, so
        no learned correction can carry a prediction past what the hardware can do."""
        n_out = feats["output_tokens"].to_numpy(float)
        tokens = feats["batch_size"].to_numpy(float) * n_out
        run_s = feats["roofline_prefill_s"].to_numpy(float) + np.maximum(n_out - 1, 0) * feats["roofline_step_s"].to_numpy(float)
        fraction = np.array([self.idle_fraction.get(h, self.idle_fraction_default) for h in feats["hardware_key"]])
        idle_j = fraction * feats["tdp_w"].to_numpy(float) * run_s / tokens
        inf, zero = np.full(len(feats), np.inf), np.zeros(len(feats))
        return {"tpot_p50_s": (feats["roofline_step_s"].to_numpy(float), inf),
                "ttft_p50_s": (feats["roofline_prefill_s"].to_numpy(float), inf),
                "tokens_per_s": (zero, tokens / run_s), "energy_per_token_j": (idle_j, inf),
                "energy_per_token_net_j": (zero, inf)}

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time.to_dict(), "energy": None if self.energy is None else self.energy.to_dict(),
                "idle_fraction": self.idle_fraction, "idle_fraction_default": self.idle_fraction_default}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Physics:
        return cls(time=ParamSet.from_dict(data["time"]),
                   energy=None if data["energy"] is None else ParamSet.from_dict(data["energy"]),
                   idle_fraction={k: float(v) for k, v in data["idle_fraction"].items()},
                   idle_fraction_default=float(data["idle_fraction_default"]))


def fit_physics(rows: pd.DataFrame, feats: pd.DataFrame, energy_rows: np.ndarray) -> Physics:
    """Fit the time model on every row with measured times, then the energy model on `energy_rows` (a mask of
    rows whose energy is measured), and take each device's idle power (median of its rows) relative to TDP."""
    phases, cols = Phases.of(feats), feature_arrays(feats)
    y = {k: _log_target(rows, k) for k in ("tpot_p50_s", "ttft_p50_s", "tokens_per_s")}

    def time_residuals(params: ParamSet) -> np.ndarray:
        t = predict_times(params, cols, phases)
        r = [np.log(t["tpot"]) - y["tpot_p50_s"], np.log(t["ttft"]) - y["ttft_p50_s"],
             np.log(t["tokens_per_s"]) - y["tokens_per_s"]]
        return np.concatenate([v[np.isfinite(v)] for v in r])

    time = _fit_params(TIME_PARAMS, phases.decode, time_residuals)
    times = predict_times(time, cols, phases)
    energy = None
    idle_fraction: dict[str, float] = {}
    default = IDLE_FRACTION_OF_TDP
    if energy_rows.any():
        y_net = _log_target(rows, "energy_per_token_net_j")
        sub = phases.take(energy_rows)
        f_sub = {c: v[energy_rows] for c, v in cols.items()}
        t_sub, y_sub = {k: v[energy_rows] for k, v in times.items()}, y_net[energy_rows]

        def energy_residuals(params: ParamSet) -> np.ndarray:
            r = np.log(_net_energy(params, f_sub, sub, t_sub)) - y_sub
            return r[np.isfinite(r)]

        if np.isfinite(y_sub).any():
            energy = _fit_params(ENERGY_PARAMS, sub.decode, energy_residuals)
        idle = feats.loc[energy_rows, "idle_power_w"].to_numpy(float) / feats.loc[energy_rows, "tdp_w"].to_numpy(float)
        hw = feats.loc[energy_rows, "hardware_key"].to_numpy()
        ok = np.isfinite(idle) & (idle > 0)
        idle_fraction = {h: float(np.median(idle[ok & (hw == h)])) for h in sorted(set(hw[ok]))}
        if ok.any():
            default = float(np.median(list(idle_fraction.values())))
    return Physics(time=time, energy=energy, idle_fraction=idle_fraction, idle_fraction_default=default)
