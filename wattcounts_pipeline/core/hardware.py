"""The hardware a measurement needs, as one tag, and what each tag asks of a fleet.

A tag names a kind of device: `cpu` (a spec that runs anywhere), `gpu` (any NVIDIA GPU), `gpu-h100`
(a GPU product, from the spec's `hardware`), with `-x<N>` when the configuration spans N GPUs. Runs and
queues are keyed by it, so a sweep over several machines sends each measurement to a host that has that
hardware, and a deployment limits each tag to as many measurements at once as it has devices of that kind.
Where a tag runs is a deployment's business: a profile (deploy/hardware.yaml) turns it into a Kubernetes
node selector, tolerations and resource limits; a Celery deployment gives it a queue named `measure-<tag>`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from wattcounts_pipeline.core.errors import SpecError

HARDWARE_TAG_KEY = "wattcounts/hardware"  # the run tag every device-stage run carries
RECORDED = "recorded"  # rows measured elsewhere and committed: no device needed, any CPU worker serves them
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's resource name on Kubernetes
_MULTI = re.compile(r"^(?P<base>.+)-x(?P<count>\d+)$")


class HardwareSpec(Protocol):
    """What a tag is derived from (an ExperimentSpec has all three)."""

    @property
    def requires(self) -> str: ...
    @property
    def hardware(self) -> str: ...
    @property
    def gpus(self) -> int: ...


def hardware_tag(spec: HardwareSpec) -> str:
    """`cpu`, `gpu` or `gpu-<product>`, plus `-x<N>` for a configuration over N > 1 GPUs."""
    product = str(spec.hardware or "any").lower()
    if product != "any":
        base = f"gpu-{product}"
    elif spec.requires == "gpu":
        base = "gpu"
    else:
        base = "cpu"
    return f"{base}-x{spec.gpus}" if spec.gpus > 1 else base


def hardware_suffix(hardware_id: str) -> str:
    """Six hex digits of sha256(hardware_id): appended to the id of a configuration measured on several
    machines, so each machine's rows are a configuration of their own (the same suffix wherever it is made)."""
    return hashlib.sha256(str(hardware_id).encode()).hexdigest()[:6]


def first_machine(started: dict[str, str]) -> str:
    """Of the machines (`hardware_id`) one configuration id was measured on, the one whose earliest run started
    first (ties: by name). It keeps the plain id and the others take `hardware_suffix`, so a configuration
    already released keeps its id when a later call measures the same spec on another card."""
    return min(started, key=lambda machine: (started[machine], machine))


def split_tag(tag: str) -> tuple[str, int]:
    """(`gpu-h100`, 2) for `gpu-h100-x2`; (`cpu`, 1) for `cpu`. The count is devices of the base kind."""
    match = _MULTI.match(tag)
    return (match["base"], int(match["count"])) if match else (tag, 1)


def queue_for(tag: str) -> str:
    """The Celery queue of a tag's device stages: `measure-gpu-h100`. Recorded rows go to the default queue."""
    return "dagster" if tag == RECORDED else f"measure-{tag}"


@dataclass(frozen=True)
class HardwareProfile:
    """Where one kind of hardware lives on Kubernetes: node labels, taints tolerated, container resources
    for ONE device (a `-x<N>` tag multiplies the GPU request by N)."""

    name: str
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    resources: dict[str, dict[str, str]] = field(default_factory=dict)

    def k8s_config(self, devices: int = 1) -> dict[str, Any]:
        """dagster-k8s user-defined config (the `dagster-k8s/config` / `per_step_k8s_config` shape)."""
        resources = {kind: dict(values) for kind, values in self.resources.items()}
        for kind in ("requests", "limits"):
            if GPU_RESOURCE in resources.get(kind, {}):
                resources[kind][GPU_RESOURCE] = str(int(resources[kind][GPU_RESOURCE]) * devices)
        pod_spec: dict[str, Any] = {}
        if self.node_selector:
            pod_spec["node_selector"] = dict(self.node_selector)
        if self.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in self.tolerations]
        config: dict[str, Any] = {"container_config": {"resources": resources}} if resources else {}
        if pod_spec:
            config["pod_spec_config"] = pod_spec
        return config


def load_profiles(path: str | Path) -> dict[str, HardwareProfile]:
    """Profiles by base tag from a YAML file with a top-level `hardware:` mapping."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read hardware profiles: {exc}") from exc
    entries = doc.get("hardware") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise SpecError(f"{path}: expected a non-empty `hardware:` mapping of tag -> profile")
    profiles = {}
    for name, entry in entries.items():
        entry = entry or {}
        unknown = set(entry) - {"node_selector", "tolerations", "resources"}
        if unknown:
            raise SpecError(f"{path}: hardware.{name}: unknown keys {sorted(unknown)}")
        profiles[str(name)] = HardwareProfile(
            name=str(name),
            node_selector={str(k): str(v) for k, v in (entry.get("node_selector") or {}).items()},
            tolerations=tuple(entry.get("tolerations") or ()),
            resources={str(k): {str(r): str(q) for r, q in v.items()} for k, v in (entry.get("resources") or {}).items()},
        )
    return profiles


def profile_for(tag: str, profiles: dict[str, HardwareProfile]) -> tuple[HardwareProfile, int]:
    """The profile of a tag's base kind and the number of devices the tag asks for."""
    base, devices = split_tag(tag)
    if base not in profiles:
        raise SpecError(f"no hardware profile for {base!r} (tag {tag!r}); known: {sorted(profiles)}")
    return profiles[base], devices
