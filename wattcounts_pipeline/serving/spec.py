"""The `serving:` section of an experiment file: named serving workloads and the load sweeps that run them.

A serving sweep starts one server, measures its idle draw, then offers it increasing load (N concurrent users, or
Poisson arrivals at a rate) until throughput stops rising or the SLO breaks. Its key (slug + hash of everything
that defines it) names its rows and log, like a batch spec's partition key.

```yaml
serving:
  workloads:
    sharegpt-short: {mix: sharegpt, output_tokens: 32, max_input_tokens: 192}
    chat: {input_tokens: 512, output_tokens: 256}        # a recommender scenario: `scenario` defaults to the name
  sweeps:
    - {model: gemma3-270m, framework: llamacpp-server, quantization: Q4_K_M, workload: sharegpt-short,
       load: {mode: open, rates: [0.25, 0.5, 1.0], duration_s: 8}, slo: {ttft_s: 2.0, tpot_s: 0.25}}
```
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload

SERVING_FRAMEWORKS = ("llamacpp-server", "vllm", "openai")  # servers we start, and endpoints someone else runs
MIXES = ("fixed", "sharegpt")
LOAD_MODES = ("closed", "open")
SCENARIO_NAMES = ("chat", "batch-summarization", "rag")  # model/recommendation.py SCENARIOS

WORKLOAD_KEYS = frozenset({"mix", "input_tokens", "output_tokens", "max_input_tokens", "num_requests", "seed",
                           "scenario", "lengths_path"})
LOAD_KEYS = frozenset({"mode", "users", "rates", "start", "factor", "max_points", "duration_s", "min_requests",
                       "max_in_flight", "stop_at_saturation", "min_gain"})
SLO_KEYS = frozenset({"ttft_s", "tpot_s", "target"})
SWEEP_KEYS = frozenset({"model", "framework", "quantization", "dtype", "engine_args", "workload", "load", "slo",
                        "slots", "idle_s", "warmup_requests", "timeout_s", "hardware"})


@dataclass(frozen=True)
class ServingWorkload:
    """What requests look like: fixed lengths (a recommender scenario) or a mix of ShareGPT length pairs.

    `sharegpt` takes the shipped seeded list of (prompt tokens, output tokens) pairs (serving/data/), prompts
    clipped to `max_input_tokens`, every answer `output_tokens` long (the shared ShareGPT subset keeps first human
    turns only, so answer lengths are not in it). Prompts are synthetic text of those token lengths.
    """

    name: str
    mix: str = "fixed"
    input_tokens: int = 512
    output_tokens: int = 256
    max_input_tokens: int = 0  # sharegpt: clip longer prompts (0: no clip)
    num_requests: int = 64  # distinct requests; a load point cycles through them
    seed: int = 0
    scenario: str = ""  # the recommender scenario these rows answer ("" for none)
    lengths_path: str = ""  # sharegpt: another length list (JSON like serving/data/sharegpt_lengths.json)

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise SpecError(f"serving workload {self.name!r}: mix must be one of {MIXES}, got {self.mix!r}")
        for attr in ("input_tokens", "output_tokens", "num_requests"):
            if int(getattr(self, attr)) < 1:
                raise SpecError(f"serving workload {self.name!r}: {attr} must be >= 1")
        if self.scenario and self.scenario not in SCENARIO_NAMES:
            raise SpecError(f"serving workload {self.name!r}: scenario must be one of {SCENARIO_NAMES}, "
                            f"got {self.scenario!r}")


@dataclass(frozen=True)
class LoadPlan:
    """The load levels of a sweep: explicit `users`/`rates`, or `start` × `factor`^k for `max_points` levels."""

    mode: str = "open"
    users: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    start: float = 0.0
    factor: float = 2.0
    max_points: int = 6
    duration_s: float = 30.0  # arrivals (open) or new requests (closed) stop after this; in-flight ones finish
    min_requests: int = 4  # an open-loop point keeps arriving until it has offered this many
    max_in_flight: int = 256  # client connections at once; further open-loop arrivals wait (and it counts)
    stop_at_saturation: bool = True
    min_gain: float = 0.05  # throughput "stops rising" when a level adds less than this fraction

    def __post_init__(self) -> None:
        if self.mode not in LOAD_MODES:
            raise SpecError(f"load.mode must be one of {LOAD_MODES}, got {self.mode!r}")
        explicit = self.users if self.mode == "closed" else self.rates
        other = self.rates if self.mode == "closed" else self.users
        if other:
            raise SpecError(f"load: a {self.mode}-loop sweep takes "
                            f"{'users' if self.mode == 'closed' else 'rates'}, not {'rates' if other == self.rates else 'users'}")
        if not explicit and self.start <= 0:
            raise SpecError(f"load: give {'users' if self.mode == 'closed' else 'rates'}, or start > 0 (auto sweep)")
        if any(not (math.isfinite(x) and x > 0) for x in explicit):
            raise SpecError(f"load: every level must be a finite number > 0, got {list(explicit)}")
        if self.mode == "closed" and any(int(u) != u for u in explicit):
            raise SpecError(f"load.users must be whole numbers, got {list(explicit)}")
        if not (self.duration_s > 0 and self.factor > 1 and self.max_points >= 1 and self.min_requests >= 1
                and self.max_in_flight >= 1 and 0 <= self.min_gain < 1):
            raise SpecError("load: needs duration_s > 0, factor > 1, max_points >= 1, min_requests >= 1, "
                            "max_in_flight >= 1 and 0 <= min_gain < 1")

    def levels(self) -> list[float]:
        """Users (closed) or requests/s (open) in the order they are offered."""
        explicit = self.users if self.mode == "closed" else self.rates
        if explicit:
            return [float(x) for x in explicit]
        out = [self.start * self.factor ** k for k in range(self.max_points)]
        return [float(max(1, round(x))) for x in out] if self.mode == "closed" else out


@dataclass(frozen=True)
class Slo:
    """Latency targets a request must meet to count toward goodput; `target` is the share of requests that must."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    target: float = 0.9

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise SpecError(f"slo.{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.target <= 1:
            raise SpecError(f"slo.target must be in (0, 1], got {self.target!r}")


@dataclass(frozen=True)
class ServingSpec:
    """One load sweep: a model served by one server configuration under one workload, at increasing load."""

    experiment: str
    model: ModelRef
    framework: str
    quantization: str
    workload: ServingWorkload
    load: LoadPlan
    slo: Slo = field(default_factory=Slo)
    dtype: str = "auto"
    engine_args: tuple[tuple[str, Any], ...] = ()
    slots: int = 1  # llama-server parallel slots / vLLM's max_num_seqs (continuous batching); llama-cpp-python: 1
    idle_s: float = 5.0
    warmup_requests: int = 2
    timeout_s: float = 120.0  # a request without a byte for this long means the server stalled
    hardware: str = "any"

    def __post_init__(self) -> None:
        if self.framework not in SERVING_FRAMEWORKS:
            raise SpecError(f"serving sweep: framework must be one of {SERVING_FRAMEWORKS}, got {self.framework!r}")
        if self.slots < 1 or self.warmup_requests < 0 or not (self.idle_s >= 0 and self.timeout_s > 0):
            raise SpecError("serving sweep: needs slots >= 1, warmup_requests >= 0, idle_s >= 0, timeout_s > 0")

    @property
    def engine_kwargs(self) -> dict[str, Any]:
        return dict(self.engine_args)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["engine_args"] = self.engine_kwargs
        return data

    @property
    def key(self) -> str:
        """Readable slug + 8 hex of the canonical JSON (experiment name excluded): the sweep's id."""
        data = self.to_dict()
        data.pop("experiment")
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
        slug = f"{self.model.name}-{self.framework}-{self.quantization}-{self.workload.name}-{self.load.mode}"
        return f"{re.sub(r'[^a-z0-9._-]+', '-', slug.lower()).strip('-')}-{digest}"

    @property
    def scenario(self) -> str:
        return self.workload.scenario

    def backend_spec(self, max_input_tokens: int, max_output_tokens: int,
                     engine_args: dict[str, Any] | None = None) -> ExperimentSpec:
        """The batch spec the server backend is built from: its workload sizes the server (context per slot,
        `-np` slots for llama-server); nothing of it is measured as a batch. `engine_args` replace the sweep's."""
        workload = Workload(name=self.workload.name, kind="fixed", input_tokens=max_input_tokens,
                            output_tokens=max_output_tokens, num_requests=1, batch_size=self.slots)
        args = {**(self.engine_kwargs if engine_args is None else engine_args), "timeout_s": self.timeout_s}
        return ExperimentSpec(experiment=self.experiment, model=self.model, framework=self.framework,
                              quantization=self.quantization, dtype=self.dtype, workload=workload,
                              engine_args=tuple(sorted(args.items())), repetitions=1, warmup_requests=0,
                              idle_s=self.idle_s, hardware=self.hardware)


def _unknown(mapping: Any, allowed: frozenset[str], where: str) -> None:
    if not isinstance(mapping, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {sorted(allowed)}"
            raise SpecError(f"{where}.{key}: unknown key{hint}")


def _workload(name: str, entry: dict[str, Any], where: str) -> ServingWorkload:
    _unknown(entry, WORKLOAD_KEYS, where)
    scenario = entry.get("scenario", name if name in SCENARIO_NAMES else "")
    return ServingWorkload(name=name, **{**entry, "scenario": scenario})


def _sweep(doc_name: str, entry: dict[str, Any], models: dict[str, ModelRef],
           workloads: dict[str, ServingWorkload], where: str) -> ServingSpec:
    _unknown(entry, SWEEP_KEYS, where)
    if entry.get("model") not in models:
        raise SpecError(f"{where}.model: unknown model {entry.get('model')!r}; known: {sorted(models)}")
    if entry.get("workload") not in workloads:
        raise SpecError(f"{where}.workload: unknown serving workload {entry.get('workload')!r}; "
                        f"known: {sorted(workloads)}")
    load = entry.get("load") or {}
    _unknown(load, LOAD_KEYS, f"{where}.load")
    slo = entry.get("slo") or {}
    _unknown(slo, SLO_KEYS, f"{where}.slo")
    if entry.get("engine_args") is not None and not isinstance(entry["engine_args"], dict):
        raise SpecError(f"{where}.engine_args: expected a mapping")
    plan = LoadPlan(**{**load, "users": tuple(load.get("users") or ()), "rates": tuple(load.get("rates") or ())})
    scalars = {k: entry[k] for k in ("dtype", "slots", "idle_s", "warmup_requests", "timeout_s", "hardware")
               if k in entry}
    return ServingSpec(experiment=doc_name, model=models[entry["model"]], framework=str(entry.get("framework")),
                       quantization=str(entry.get("quantization", "")), workload=workloads[entry["workload"]],
                       load=plan, slo=Slo(**slo),
                       engine_args=tuple(sorted((str(k), v) for k, v in (entry.get("engine_args") or {}).items())),
                       **scalars)


def parse_serving(doc: dict[str, Any], name: str) -> list[ServingSpec]:
    """The serving sweeps of one parsed experiment document (none when it has no `serving:` section)."""
    section = doc.get("serving")
    if section is None:
        return []
    _unknown(section, frozenset({"workloads", "sweeps"}), "serving")
    models = {m: ModelRef(name=m, **ref) for m, ref in (doc.get("models") or {}).items()}
    raw_workloads = section.get("workloads") or {}
    _unknown(raw_workloads, frozenset(raw_workloads), "serving.workloads")
    workloads = {w: _workload(w, entry, f"serving.workloads.{w}") for w, entry in raw_workloads.items()}
    sweeps = section.get("sweeps") or []
    if not isinstance(sweeps, list):
        raise SpecError(f"serving.sweeps: expected a list, got {type(sweeps).__name__}")
    return [_sweep(name, entry, models, workloads, f"serving.sweeps[{i}]") for i, entry in enumerate(sweeps)]


def load_serving(path: str | Path) -> list[ServingSpec]:
    """The serving sweeps of an experiment file, naming the file and the entry in every error."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: experiment file not found") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: top level must be a mapping")
    try:
        return parse_serving(doc, str(doc.get("name") or path.stem))
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except TypeError as exc:  # a wrong value type reaching a dataclass
        raise SpecError(f"{path}: serving: {exc}") from None
