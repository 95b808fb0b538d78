"""Resources and partitions shared by the stages."""

import os
from pathlib import Path

import dagster as dg

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec, load_experiments
from wattcounts_pipeline.meters.base import EnergyMeter
from wattcounts_pipeline.meters.select import best_meter

experiment_partitions = dg.DynamicPartitionsDefinition(name="experiment_spec")
submission_partitions = dg.DynamicPartitionsDefinition(name="submission_bundle")


def default_experiment_files() -> list[str]:
    """$WATTCOUNTS_EXPERIMENTS (':'-separated), else experiments/default.yaml."""
    env = os.environ.get("WATTCOUNTS_EXPERIMENTS")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [str(paths.EXPERIMENTS_DIR / "default.yaml")]


class ExperimentsResource(dg.ConfigurableResource):
    """The experiment files whose specs become `experiment_spec` partitions, and the folders of
    sweeps recorded on other hosts (GPU machines) whose rows stand in for a live measurement."""

    files: list[str] = []
    recorded: list[str] = []

    def recorded_dirs(self) -> list[Path]:
        if self.recorded:
            return [Path(p) for p in self.recorded]
        root = paths.REPO_ROOT / "data" / "measurements"
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def paths(self) -> list[Path]:
        return [Path(f) for f in (self.files or default_experiment_files())]

    def specs(self) -> dict[str, ExperimentSpec]:
        return load_experiments(self.paths())

    def spec(self, key: str) -> ExperimentSpec:
        specs = self.specs()
        if key not in specs:
            raise SpecError(f"partition {key!r} is in no experiment file any more ({[str(p) for p in self.paths()]})")
        return specs[key]


class MeterResource(dg.ConfigurableResource):
    """Which energy meter to use: 'auto' picks NVML, then RAPL, then the labelled CPU estimate."""

    prefer: str = "auto"

    def create(self) -> EnergyMeter:
        return best_meter(None if self.prefer == "auto" else self.prefer)


def register_experiments(instance: dg.DagsterInstance, experiments: ExperimentsResource) -> list[str]:
    """Add a partition for every spec not registered yet; returns the new keys (never duplicates)."""
    known = set(instance.get_dynamic_partitions(experiment_partitions.name))
    new = [k for k in experiments.specs() if k not in known]
    if new:
        instance.add_dynamic_partitions(experiment_partitions.name, new)
    return new
