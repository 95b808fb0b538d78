"""Resources and partitions shared by the stages."""

import functools
import logging
import os
from pathlib import Path

import dagster as dg
import yaml

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.partition_specs import store_specs, stored_spec
from wattcounts_pipeline.core.specs import ExperimentSpec, load_experiments
from wattcounts_pipeline.measure.store import done_keys
from wattcounts_pipeline.meters.base import EnergyMeter
from wattcounts_pipeline.meters.nvml_device import gpu_present
from wattcounts_pipeline.meters.select import best_meter

EXPERIMENT_PARTITIONS = "experiment_spec"
SUBMISSION_PARTITIONS = "submission_bundle"
experiment_partitions = dg.DynamicPartitionsDefinition(name=EXPERIMENT_PARTITIONS)
submission_partitions = dg.DynamicPartitionsDefinition(name=SUBMISSION_PARTITIONS)
logger = logging.getLogger(__name__)


def default_experiment_files() -> list[str]:
    """$WATTCOUNTS_EXPERIMENTS (':'-separated), else every experiments/*.yaml not marked
    `in_default_set: false` (long ones a user asks for by name)."""
    env = os.environ.get("WATTCOUNTS_EXPERIMENTS")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [str(p) for p in sorted(paths.EXPERIMENTS_DIR.glob("*.yaml")) if _in_default_set(p)]


def _in_default_set(path: Path) -> bool:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return True  # let loading it report the problem with the file's name
    return not isinstance(doc, dict) or doc.get("in_default_set", True) is not False


class ExperimentsResource(dg.ConfigurableResource):
    """The experiment files whose specs become `experiment_spec` partitions, and the folders of
    sweeps recorded on other hosts (GPU machines) whose rows stand in for a live measurement."""

    files: list[str] = []  # noqa: RUF012 - pydantic copies field defaults
    recorded: list[str] = []  # noqa: RUF012 - pydantic copies field defaults

    def recorded_dirs(self) -> list[Path]:
        if self.recorded:
            return [Path(p) for p in self.recorded]
        root = paths.REPO_ROOT / "data" / "measurements"
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def paths(self) -> list[Path]:
        return [Path(f) for f in (self.files or default_experiment_files())]

    def specs(self) -> dict[str, ExperimentSpec]:
        """Specs of every readable file; a broken file is logged and skipped so it cannot stall the others.
        Parsed once per process while the files stay unchanged: a run over many partitions asks per partition."""
        stamps = []
        for path in self.paths():
            try:
                st = path.stat()
                stamps.append((str(path), st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((str(path), 0, 0))  # loading it reports the missing file
        return dict(_load_specs(tuple(stamps)))

    def measurable_specs(self) -> dict[str, ExperimentSpec]:
        """Specs this host can measure live, or whose rows were recorded elsewhere (GPU sweeps)."""
        specs = self.specs()
        if gpu_present():
            return specs
        recorded = set().union(*(done_keys(d) for d in self.recorded_dirs())) if self.recorded_dirs() else set()
        return {k: s for k, s in specs.items() if s.requires != "gpu" or k in recorded}

    def find(self, key: str) -> ExperimentSpec | None:
        """The spec registered for partition `key` (core/partition_specs.py), else the experiment files' spec
        of that key (stored then, for partitions registered before specs were stored), else None."""
        spec = stored_spec(key)
        if spec is None:
            spec = self.specs().get(key)
            if spec is not None:
                store_specs([spec])
        return spec

    def spec(self, key: str) -> ExperimentSpec:
        """The spec every stage of partition `key` runs: the one stored when it was registered."""
        spec = self.find(key)
        if spec is None:
            raise SpecError(f"partition {key!r} was never registered and is in no readable experiment file "
                            f"({[str(p) for p in self.paths()]}; see the log for files skipped as broken)")
        return spec


@functools.lru_cache(maxsize=8)
def _load_specs(stamps: tuple[tuple[str, int, int], ...]) -> dict[str, ExperimentSpec]:
    specs: dict[str, ExperimentSpec] = {}
    for path, _, _ in stamps:
        try:
            specs.update({k: s for k, s in load_experiments([path]).items() if k not in specs})
        except SpecError as exc:
            logger.error("skipping experiment file: %s", exc)
    return specs


class MeterResource(dg.ConfigurableResource):
    """Which energy meter to use: 'auto' picks NVML, then Zeus (AMD, Apple Silicon, Jetson), then RAPL, then the
    labelled CPU estimate; or one by name (nvml, zeus, rapl, estimate, replay:<trace>)."""

    prefer: str = "auto"

    def create(self, gpus: int | None = None) -> EnergyMeter:
        """A meter over the first `gpus` visible GPUs (all when None) where NVML is present."""
        return best_meter(None if self.prefer == "auto" else self.prefer, gpus=gpus)


def register_experiments(instance: dg.DagsterInstance, experiments: ExperimentsResource) -> list[str]:
    """Add a partition for every measurable spec not registered yet, its resolved spec stored first so every
    stage (on any host that reaches the store) reads that spec; returns the new keys (never duplicates).
    GPU-only specs without recorded rows wait for a host with a GPU."""
    known = set(instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS))
    specs = experiments.measurable_specs()
    store_specs(specs.values())  # known partitions too: those registered before specs were stored
    new = [k for k in specs if k not in known]
    if new:
        instance.add_dynamic_partitions(EXPERIMENT_PARTITIONS, new)
    return new
