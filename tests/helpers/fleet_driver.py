"""Launches one fleet sweep the way a deployment's run workers would, for tests/e2e/test_fleet_celery.py.

Run as a script with DAGSTER_HOME, WATTCOUNTS_EXECUTOR=celery and the WATTCOUNTS_* variables set (the
executor is chosen when the definitions are imported, so this needs a process of its own). Each run gets a
process of its own too, as a run launcher gives it (Dagster runs are not thread-safe within one process).
Phase 1: one `measure_on_hardware` run per registered partition, all at once, each with the tags and run
config a backfill of that job gives the partition. Phase 2: the runs that the `validate_after_measurement`
sensor requests for the successful ones, all at once. Steps execute on the Celery workers; these processes
only orchestrate. Prints {partition: {"measure": run_id, "validate": run_id}} as JSON.
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing
import os
import signal
import sys

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.fleet import validate_after_measurement
from wattcounts_pipeline.defs.resources import experiment_partitions


def execute_partition(job_name: str, key: str) -> str:
    """One run of `job_name` for partition `key` with the run config and tags its partitioned config gives."""
    job = defs.resolve_job_def(job_name)
    repo = ReconstructableRepository.for_module("wattcounts_pipeline.definitions", "defs", os.getcwd())
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(repo.get_reconstructable_job(job_name), instance,
                                run_config=job.get_run_config_for_partition_key(key),
                                tags=job.get_tags_for_partition_key(key, selected_asset_keys=None))
    return result.run_id


def follow_up(instance: dg.DagsterInstance, run_id: str) -> dg.RunRequest | None:
    """What the success sensor requests for a finished device run (None if the run failed)."""
    run = instance.get_run_by_id(run_id)
    success = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    if run is None or not success:
        return None
    context = dg.build_run_status_sensor_context(sensor_name=validate_after_measurement.name,
                                                 dagster_event=success[0].dagster_event,
                                                 dagster_instance=instance, dagster_run=run)
    request = validate_after_measurement(context)
    return request if isinstance(request, dg.RunRequest) else None


def stacks_on_sigusr1() -> None:
    """On SIGUSR1 write every thread's stack to $FLEET_STACKS_DIR/stacks-<pid>.txt (one file per process, so
    the forked run processes' dumps do not interleave): the test sends it to a hung sweep before stopping it."""
    folder = os.environ.get("FLEET_STACKS_DIR")
    if folder:
        out = open(os.path.join(folder, f"stacks-{os.getpid()}.txt"), "w")  # noqa: SIM115 (open until exit)
        faulthandler.register(signal.SIGUSR1, file=out, all_threads=True)


def run_all(job_name: str, partitions: list[str]) -> list[str]:
    """One run of `job_name` per partition, all at once, each in a forked process of its own; the run ids in order.
    The pool is closed and joined, never terminated (what `with Pool()` does): after a Dagster run SIGTERM no
    longer kills the process (Dagster maps it to its interrupt handler), and Pool.terminate holds the task queue's
    lock while it waits for its workers to die, so one such worker waiting on that lock hung the sweep for good
    (the stacks of a hung clean-clone CI run, 2026-12-06)."""
    fork = multiprocessing.get_context("fork")  # no threads yet: forking keeps the imports, each run starts at once
    pool = fork.Pool(max(len(partitions), 1), initializer=stacks_on_sigusr1)
    try:
        return pool.starmap(execute_partition, [(job_name, p) for p in partitions], chunksize=1)
    finally:
        pool.close()  # each worker takes a stop sentinel and exits by itself
        pool.join()


def main() -> int:
    stacks_on_sigusr1()
    with dg.DagsterInstance.get() as instance:
        keys = instance.get_dynamic_partitions(experiment_partitions.name)
    measured = dict(zip(keys, run_all("measure_on_hardware", keys), strict=True))
    print(f"fleet driver: phase 1 done, {len(measured)} runs", file=sys.stderr, flush=True)  # where a hang waits
    with dg.DagsterInstance.get() as instance:
        requests = {k: follow_up(instance, run_id) for k, run_id in measured.items()}
    todo = [(k, r.partition_key) for k, r in requests.items() if r is not None]
    print(f"fleet driver: phase 2 starts {len(todo)} runs", file=sys.stderr, flush=True)
    validated = dict(zip([k for k, _ in todo], run_all("validate_measured", [p for _, p in todo]), strict=True))
    print(json.dumps({k: {"measure": measured[k], **({"validate": validated[k]} if k in validated else {})}
                      for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
