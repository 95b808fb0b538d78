"""The bundle manifest: parsed safely, checked against `schemas/submission_manifest.yaml`, specs rebuilt.

The contract file is the single source for what a manifest may hold (FORMAT.md and the checks both read it);
rules that span fields (GPU name when GPUs are declared, schema versions we can read) live here.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.errors import ContractError, SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec
from wattcounts_pipeline.core.text import UNSAFE

SOURCE = "manifest.yaml"
FORMULA_PREFIX = re.compile(r"^[\t\r ]*[=+\-@]")  # what spreadsheets run as a formula
# What a terminal, a Markdown renderer or a reader's eye can be fooled by: C0/C1 controls (ANSI escapes start
# with ESC), zero-width and bidi override characters. Free text (notes) may keep tabs and newlines.
UNSAFE_CHARS = UNSAFE
UNSAFE_IN_TEXT = re.compile(UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x08\x0b-\x1f"))
MAX_STRING_CHARS = 1000  # any manifest string without a stricter rule of its own
FREE_TEXT = ("notes",)
TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                      "mapping": (dict,), "list": (list,)}
_MISSING = object()
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same safe constructors


class _StrictLoader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a key given twice: PyYAML keeps the last, so `consent: false` followed by
    `consent: true` would silently mean consent."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base constructor reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)
_LOADER = _StrictLoader


@dataclass(frozen=True)
class ManifestField:
    name: str
    type: str
    description: str
    required: bool = False
    allowed: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    regex: str = ""
    open: bool = False


@dataclass(frozen=True)
class Manifest:
    """A manifest that passed every check: the raw document and the specs it declares, by key."""

    doc: dict[str, Any]
    specs: dict[str, ExperimentSpec] = field(default_factory=dict)


@functools.cache
def manifest_fields() -> tuple[ManifestField, ...]:
    """The fields of `schemas/submission_manifest.yaml`."""
    path = paths.SCHEMAS_DIR / "submission_manifest.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        out = []
        for entry in doc["fields"]:
            if entry.get("type") not in TYPES:
                raise ContractError(f"{path}: field {entry.get('name')}: unknown type {entry.get('type')!r}")
            out.append(ManifestField(**{**entry, "allowed": tuple(entry.get("allowed", ()))}))
        return tuple(out)
    except (KeyError, TypeError) as exc:
        raise ContractError(f"{path}: malformed manifest contract: {exc}") from exc


def parse_manifest(data: bytes, max_bytes: int) -> tuple[Manifest | None, list[str]]:
    """The checked manifest (None if unusable) and every reason it fails, each naming the field."""
    if len(data) > max_bytes:
        return None, [f"{SOURCE}: {len(data)} bytes, more than the {max_bytes} allowed"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"{SOURCE}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"]
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=_LOADER)):
            return None, [f"{SOURCE}: YAML aliases (*anchor) are not allowed"]
        doc = yaml.load(text, Loader=_LOADER)  # a safe loader (C or Python)
    except yaml.constructor.ConstructorError as exc:
        if exc.problem and exc.problem.startswith("duplicate key"):
            return None, [f"{SOURCE}: {exc.problem}: a key may appear once per mapping"]
        return None, [f"{SOURCE}: YAML tag not allowed ({exc.problem})"]
    except yaml.YAMLError as exc:
        return None, [f"{SOURCE}: not valid YAML: {exc}"]
    if not isinstance(doc, dict):
        return None, [f"{SOURCE}: top level must be a mapping"]
    reasons = (check_fields(doc, manifest_fields()) + _formula_cells(doc) + _text_reasons(doc) + _cross_field(doc)
               + _date_reasons(doc))
    specs, spec_reasons = _specs(doc)
    reasons += spec_reasons
    return (None if reasons else Manifest(doc, specs)), reasons


def check_fields(doc: dict[str, Any], fields: tuple[ManifestField, ...]) -> list[str]:
    """Types, presence, allowed values, ranges and unknown keys, one reason per problem."""
    reasons: list[str] = []
    for f in fields:
        for path, value in _resolve(doc, f.name):
            reasons += _check_value(f, path, value)
    strict = {"": True} | {f.name: not f.open for f in fields if f.type == "mapping"}
    known = {f.name for f in fields}
    for parent, is_strict in strict.items():
        if not is_strict:
            continue
        for path, value in ([("", doc)] if not parent else _resolve(doc, parent)):
            if isinstance(value, dict):
                for key in value:
                    child = f"{parent}.{key}" if parent else str(key)
                    if child not in known:
                        where = f"{path}.{key}" if path else str(key)
                        reasons.append(f"{SOURCE}: field {where}: unknown field")
    return reasons


def _resolve(doc: Any, name: str) -> list[tuple[str, Any]]:
    """Concrete (path, value) pairs for a field name; `[]` expands over list items, absent keys give _MISSING."""
    found: list[tuple[str, Any]] = [("", doc)]
    for part in name.split("."):
        key, each = (part[:-2], True) if part.endswith("[]") else (part, False)
        step: list[tuple[str, Any]] = []
        for path, value in found:
            if not isinstance(value, dict):
                continue  # the parent's own check reports a wrong type or absence
            here = f"{path}.{key}" if path else key
            child = value.get(key, _MISSING)
            if not each:
                step.append((here, child))
            elif isinstance(child, list):
                step += [(f"{here}[{i}]", item) for i, item in enumerate(child)]
        found = step
    return found


def _part(doc: dict[str, Any], key: str, kind: type[Any]) -> Any:
    """`doc[key]` if it is a `kind` (dict or list), else an empty one: check_fields reports the wrong type."""
    value = doc.get(key)
    return value if isinstance(value, kind) else kind()


def _check_value(f: ManifestField, path: str, value: Any) -> list[str]:
    where = f"{SOURCE}: field {path}"
    if value is _MISSING or value is None:
        return [f"{where}: required field is missing"] if f.required else []
    kinds: Any = TYPES[f.type]  # Any: the checks below depend on f.type, which isinstance cannot narrow by
    if not isinstance(value, kinds) or (f.type in ("int", "float") and isinstance(value, bool)):
        hint = " (quote it: YAML reads 3.10 as the number 3.1)" if f.type == "string" else ""
        return [f"{where}: expected {f.type}, got {type(value).__name__} {_short(value)}{hint}"]
    if f.type == "float" and not math.isfinite(value):
        return [f"{where}: {value!r} is not a finite number"]
    reasons = []
    if f.allowed and value not in f.allowed:
        reasons.append(f"{where}: {value!r} not one of {list(f.allowed)}")
    size = len(value) if f.type == "list" else value
    if f.min is not None and f.type in ("int", "float", "list") and size < f.min:
        reasons.append(f"{where}: {size!r} below minimum {f.min:g}")
    if f.max is not None and f.type in ("int", "float", "list") and size > f.max:
        reasons.append(f"{where}: {size!r} above maximum {f.max:g}")
    if f.regex and not re.fullmatch(f.regex, value):  # fullmatch: `$` alone lets a trailing newline through
        reasons.append(f"{where}: {_short(value)} does not match {f.regex}")
    return reasons


def _short(value: Any) -> str:
    """repr cut short: a reason names the value, it does not echo 600 KB of it."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}... ({len(text)} characters)"


def _walk(value: Any, path: str) -> list[tuple[str, Any]]:
    """Every (path, leaf) of nested mappings and lists."""
    out, stack = [], [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            stack += [(f"{where}.{k}" if where else str(k), v) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(node)]
        else:
            out.append((where, node))
    return sorted(out, key=lambda item: item[0])


def _text_reasons(doc: dict[str, Any]) -> list[str]:
    """Strings anywhere (specs included) free of control and bidi characters and of bounded length; software
    versions are strings; every number finite (a NaN would reach provenance.json as bare, invalid `NaN`)."""
    reasons = []
    for path, value in _walk(doc, ""):
        where = f"{SOURCE}: field {path}"
        if isinstance(value, float) and not math.isfinite(value):
            reasons.append(f"{where}: {value!r} is not a finite number")
        elif isinstance(value, str):
            unsafe = (UNSAFE_IN_TEXT if path in FREE_TEXT else UNSAFE_CHARS).search(value)
            if unsafe:
                reasons.append(f"{where}: holds control or bidi character U+{ord(unsafe.group()):04X}")
            if path not in FREE_TEXT and len(value) > MAX_STRING_CHARS:
                reasons.append(f"{where}: {len(value)} characters, more than the {MAX_STRING_CHARS} allowed")
    software = _part(doc, "software", dict)
    for key, value in software.items():
        if not isinstance(value, str):
            reasons.append(f"{SOURCE}: field software.{key}: expected string, got {type(value).__name__} "
                           f"{_short(value)} (quote versions)")
    return list(dict.fromkeys(reasons))


def parse_utc(text: str) -> datetime | None:
    """An ISO-8601 timestamp as an aware datetime (no zone: UTC), or None if it names no real instant."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _date_reasons(doc: dict[str, Any]) -> list[str]:
    value = doc.get("created_at")
    if not isinstance(value, str):
        return []  # check_fields reports it
    moment = parse_utc(value)
    if moment is None:
        return [f"{SOURCE}: field created_at: {_short(value)} is not a real ISO-8601 date and time"]
    if moment > datetime.now(UTC) + timedelta(days=1):
        return [f"{SOURCE}: field created_at: {value!r} lies in the future"]
    return []


def _formula_cells(doc: dict[str, Any]) -> list[str]:
    """Free-text values that a spreadsheet would run (specs excluded: engine args may hold CLI flags)."""
    reasons = []
    for key in ("contributor", "hardware", "software", "notes"):
        stack: list[tuple[str, Any]] = [(key, doc.get(key))]
        while stack:
            path, value = stack.pop()
            if isinstance(value, dict):
                stack += [(f"{path}.{k}", v) for k, v in value.items()]
            elif isinstance(value, str) and FORMULA_PREFIX.match(value):
                reasons.append(f"{SOURCE}: field {path}: starts with {value.lstrip()[0]!r} "
                               "(spreadsheet formula injection)")
    return reasons


def _cross_field(doc: dict[str, Any]) -> list[str]:
    reasons = []
    hardware = _part(doc, "hardware", dict)
    if isinstance(hardware.get("gpu_count"), int) and hardware["gpu_count"] > 0 and not hardware.get("gpu_name"):
        reasons.append(f"{SOURCE}: field hardware.gpu_name: required when hardware.gpu_count > 0")
    versions = _part(doc, "schema_versions", dict)
    for table in ("runs", "requests"):
        ours = load_contract(table).version
        if isinstance(versions.get(table), int) and versions[table] != ours:
            reasons.append(f"{SOURCE}: field schema_versions.{table}: bundle follows version {versions[table]}, "
                           f"this pipeline reads version {ours}")
    return reasons


def _specs(doc: dict[str, Any]) -> tuple[dict[str, ExperimentSpec], list[str]]:
    """Specs rebuilt with ExperimentSpec.from_dict; keys unknown to `to_dict()` are refused, not ignored."""
    specs: dict[str, ExperimentSpec] = {}
    reasons: list[str] = []
    items = _part(doc, "specs", list)
    for i, item in enumerate(items):
        where = f"{SOURCE}: field specs[{i}]"
        if not isinstance(item, dict):
            continue  # reported by check_fields
        try:
            spec = ExperimentSpec.from_dict(item)
            key = spec.key
        except SpecError as exc:
            reasons.append(f"{where}: {exc}")
            continue
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            reasons.append(f"{where}: not an ExperimentSpec.to_dict() ({type(exc).__name__}: {exc})")
            continue
        unknown = sorted(_keys(item) - _keys(spec.to_dict()))
        if unknown:
            reasons.append(f"{where}: unknown spec key(s) {unknown}")
        if key in specs:
            reasons.append(f"{where}: same configuration as an earlier spec (key {key})")
        specs[key] = spec
    return specs, reasons


def _keys(data: dict[str, Any]) -> set[str]:
    """Dotted key paths of nested mappings (engine_args' own keys excluded: they are free-form)."""
    out: set[str] = set()
    stack = [("", data)]
    while stack:
        prefix, mapping = stack.pop()
        for key, value in mapping.items():
            path = f"{prefix}{key}"
            out.add(path)
            if isinstance(value, dict) and path != "engine_args":
                stack.append((path + ".", value))
    return out
