"""Fleet execution: one sweep over several GPU servers, each measurement on the hardware its spec needs,
never two at once on one device, with Dagster's own executors and run queue instead of a scheduler of ours.

The device stages of a partition (`measurements`, `quality_scores`: both run the model) form the job
`measure_on_hardware`. Each of its runs carries the partition's hardware tag (`wattcounts/hardware: gpu-h100`)
and run config that sends those steps to that hardware:
- `WATTCOUNTS_EXECUTOR=k8s`: `k8s_job_executor`, with `per_step_k8s_config` giving the two steps the tag's
  node selector, tolerations and `nvidia.com/gpu` limit (profiles: deploy/hardware.yaml). Kubernetes hands
  a pod whole GPUs, so two measurements never share one.
- `WATTCOUNTS_EXECUTOR=celery`: `celery_executor`, the run's steps on queue `measure-<tag>`; a host runs one
  worker with concurrency 1 per device, listening on its tag's queue.
- unset (one machine, `dagster dev`): Dagster's default executor; the `measurement` pool (limit 1 in
  .dagster/dagster.yaml) keeps device stages one at a time.
CPU stages (validation, aggregation, release, training) run anywhere and in parallel: `validate_measured`
follows each successful device run (sensor `validate_after_measurement`), the rest as usual.
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.hardware import (
    HARDWARE_TAG_KEY,
    RECORDED,
    hardware_tag,
    load_profiles,
    profile_for,
    queue_for,
)
from wattcounts_pipeline.core.specs import ExperimentSpec
from wattcounts_pipeline.defs.resources import ExperimentsResource, experiment_partitions
from wattcounts_pipeline.measure.store import done_keys

EXECUTOR_ENV = "WATTCOUNTS_EXECUTOR"  # "", "k8s" or "celery"
PROFILES_ENV = "WATTCOUNTS_HARDWARE_PROFILES"  # hardware profiles YAML; default deploy/hardware.yaml
CELERY_CONFIG_ENV = "WATTCOUNTS_CELERY_CONFIG"  # the worker config YAML; default deploy/celery/celery.yaml
HOST_HARDWARE_ENV = "WATTCOUNTS_HOST_HARDWARE"  # comma-separated tags this worker may measure
DEVICE_STAGES = ["measurements", "quality_scores"]  # the steps that run the model on the device
UNKNOWN = "unknown"  # a partition in no readable experiment file: its run fails in the asset with the reason
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue: CPU stages


def executor_kind() -> str:
    """Which executor this code location uses: "" (Dagster's default), "k8s" or "celery"."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if kind not in ("", "k8s", "celery"):
        raise SpecError(f"{EXECUTOR_ENV} must be empty, 'k8s' or 'celery', got {kind!r}")
    return kind


def partition_hardware(key: str, experiments: ExperimentsResource) -> str:
    """The hardware tag of a partition: `recorded` when its rows were committed from another host."""
    spec = experiments.find(key)
    if spec is None:
        return UNKNOWN
    if any(key in done_keys(folder) for folder in experiments.recorded_dirs()):
        return RECORDED
    return hardware_tag(spec)


def device_run_config(tag: str, kind: str) -> dict[str, Any]:
    """Run config that places a device-stage run of `tag` on that hardware, for executor `kind`."""
    if kind == "celery":
        return {"execution": {"config": {"queue": DEFAULT_QUEUE if tag in (RECORDED, UNKNOWN) else queue_for(tag)}}}
    if kind == "k8s" and tag not in (RECORDED, UNKNOWN):
        profiles = load_profiles(os.environ.get(PROFILES_ENV) or paths.REPO_ROOT / "deploy" / "hardware.yaml")
        profile, devices = profile_for(tag, profiles)
        step = profile.k8s_config(devices)
        return {"execution": {"config": {"per_step_k8s_config": {name: step for name in DEVICE_STAGES}}}}
    return {}


def _partition_run_config(key: str) -> dict[str, Any]:
    return device_run_config(partition_hardware(key, ExperimentsResource()), executor_kind())


def _partition_tags(key: str) -> dict[str, str]:
    return {HARDWARE_TAG_KEY: partition_hardware(key, ExperimentsResource())}


def celery_executor_def() -> dg.ExecutorDefinition:
    """dagster-celery's executor with the broker settings of the workers' own config file and one run-config
    field, `queue`: the queue of the run's steps (device runs: `measure-<tag>`; others: `dagster`)."""
    from dagster_celery import celery_executor

    def to_celery(config: dict[str, Any]) -> dict[str, Any]:
        path = Path(os.environ.get(CELERY_CONFIG_ENV) or paths.REPO_ROOT / "deploy" / "celery" / "celery.yaml")
        base = dict(((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("execution") or {})
                    .get("config") or {})
        return {**base, "config_source": {**(base.get("config_source") or {}), "task_default_queue": config["queue"]}}

    return celery_executor.configured(
        to_celery, name="celery",
        config_schema={"queue": dg.Field(str, default_value=DEFAULT_QUEUE,
                                         description="Celery queue of this run's steps")})


def fleet_executor() -> dg.ExecutorDefinition | None:
    """The executor named by WATTCOUNTS_EXECUTOR; None keeps Dagster's default (multiprocess)."""
    kind = executor_kind()
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind == "celery":
        return celery_executor_def()
    return None


def partition_backfill_policy() -> dg.BackfillPolicy | None:
    """How a backfill of the partitioned stages is cut into runs. One machine: a single run for every
    partition, so "Materialize all" costs one step per stage instead of a run and its processes per partition
    (live measurements in it still run one after another, and the `measurement` pool keeps other runs' device
    steps out). A fleet: one run per partition, each tagged and configured for its hardware below."""
    return None if executor_kind() else dg.BackfillPolicy.single_run()


measure_on_hardware = dg.define_asset_job(
    "measure_on_hardware",
    selection=DEVICE_STAGES,
    description="The device stages of one experiment partition (measurement and quality), placed on the "
                "hardware its spec needs; each run is tagged `wattcounts/hardware`.",
    # per-partition tags and run config place runs on a fleet; Dagster allows them only for one partition per run
    config=dg.PartitionedConfig(partitions_def=experiment_partitions,
                                run_config_for_partition_key_fn=_partition_run_config,
                                tags_for_partition_key_fn=_partition_tags) if executor_kind() else None,
)

validate_measured = dg.define_asset_job(
    "validate_measured",
    selection=["validated_measurements"],
    description="The CPU stage of one partition after its device stages: validation, on any worker.",
)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[measure_on_hardware],
    request_job=validate_measured,
    default_status=dg.DefaultSensorStatus.RUNNING if executor_kind() else dg.DefaultSensorStatus.STOPPED,
)
def validate_after_measurement(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    """Validates each partition as soon as its device run succeeds, so CPU work never waits for the sweep."""
    key = context.dagster_run.tags.get("dagster/partition")
    if not key:
        return dg.SkipReason("run has no partition")
    return dg.RunRequest(run_key=context.dagster_run.run_id, partition_key=key)


class FleetExperimentsResource(ExperimentsResource):
    """ExperimentsResource of a fleet's processes. The fleet has the GPUs, so every spec gets a partition even
    where the registering host has none; a worker whose WATTCOUNTS_HOST_HARDWARE lists what it serves refuses
    a device stage of other hardware (a GPU spec sent to a CPU worker by a plain asset backfill fails with
    the reason instead of measuring a CPU)."""

    serves: list[str] = []  # noqa: RUF012 - pydantic copies field defaults

    def measurable_specs(self) -> dict[str, ExperimentSpec]:
        return self.specs()

    def spec(self, key: str) -> ExperimentSpec:
        spec = super().spec(key)
        tag = partition_hardware(key, self)
        if self.serves and tag != RECORDED and tag not in self.serves:
            raise SpecError(f"partition {key!r} needs hardware {tag!r}; this worker serves {self.serves} "
                            f"({HOST_HARDWARE_ENV}): launch device stages through the measure_on_hardware job")
        return spec


def experiments_resource() -> ExperimentsResource:
    """The fleet's resource when WATTCOUNTS_EXECUTOR or WATTCOUNTS_HOST_HARDWARE is set, else the plain one."""
    serves = [t.strip() for t in os.environ.get(HOST_HARDWARE_ENV, "").split(",") if t.strip()]
    return FleetExperimentsResource(serves=serves) if serves or executor_kind() else ExperimentsResource()
