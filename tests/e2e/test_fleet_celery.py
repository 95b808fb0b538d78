"""A 2-host sweep on one machine, with real Dagster runs and real Celery workers: no mocks.

Two device workers stand for two hosts, each claiming one hardware tag (`cpu`, `gpu`: the "gpu host" is a
worker on this CPU, since what is tested is where and when each measurement runs), started by the same
deploy/celery/worker.sh a lab would run; a third worker takes the CPU stages. The broker is kombu's
filesystem transport and the store a `file://` URL, stand-ins for Redis and S3 that need no server. The
Dagster instance (SQLite in a temp dir) records when each step started and ended, and on which worker: the
test reads those records to show that measurements of one tag never overlap while the two hosts measure
at the same time and the CPU stages run in parallel, then aggregates everything from the one store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.helpers import REPO, TESTS
from wattcounts_pipeline.core.hardware import HARDWARE_TAG_KEY
from wattcounts_pipeline.core.specs import load_experiments
from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.io import TableStoreIOManager
from wattcounts_pipeline.defs.resources import ExperimentsResource, experiment_partitions

SWEEP = REPO / "tests" / "data" / "fleet.yaml"
DEVICE_STAGES = ("measurements", "quality_scores")


@dataclass(frozen=True)
class StepSpan:
    """One step of one run, from the instance's event records."""

    partition: str
    tag: str
    step: str
    worker: str
    start_s: float
    end_s: float

    def overlaps(self, other: StepSpan) -> bool:
        return self.start_s < other.end_s and other.start_s < self.end_s


def spans(instance: dg.DagsterInstance, run_ids: list[str]) -> list[StepSpan]:
    """Each step's time on its Celery worker: from the worker's "Executing steps … in celery worker" event
    (the task has started there) to STEP_SUCCESS/STEP_FAILURE, with the worker's name from that event."""
    out = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        records = instance.all_logs(run_id)
        end = {r.step_key: r.timestamp for r in records if r.dagster_event_type in (
            dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)}
        for r in records:
            data = r.dagster_event.event_specific_data if r.dagster_event else None
            metadata = getattr(data, "metadata", None) or {}
            if r.step_key and "Celery worker" in metadata:
                out.append(StepSpan(run.tags["dagster/partition"], run.tags.get(HARDWARE_TAG_KEY, ""), r.step_key,
                                    str(metadata["Celery worker"].value), r.timestamp, end[r.step_key]))
    return out


@pytest.fixture()
def fleet_dir() -> Iterator[Path]:
    """A short temp path (the broker keeps one file per message there)."""
    with tempfile.TemporaryDirectory(prefix="wc-fleet-") as tmp:
        yield Path(tmp)


def start_worker(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """deploy/celery/worker.sh in a process group of its own, so it can be stopped whole."""
    with log.open("wb") as out:
        return subprocess.Popen(["bash", str(REPO / "deploy" / "celery" / "worker.sh"), *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Stop a process group we started: SIGTERM (a warm shutdown), then SIGKILL for whatever is left of it."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
        if sig == signal.SIGTERM:
            time.sleep(1)  # the group's other members (celery itself, run processes) finish their shutdown


def test_two_host_sweep_measures_each_tag_one_at_a_time(fleet_dir: Path) -> None:
    home, store = fleet_dir / "dagster_home", fleet_dir / "store"
    broker, results = fleet_dir / "broker", fleet_dir / "results"
    for folder in (home, store, broker, results):
        folder.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({
        "telemetry": {"enabled": False},
        "concurrency": {"pools": {"default_limit": 8}},  # pool slots for every queued device step
    }))
    celery_yaml = fleet_dir / "celery.yaml"
    celery_yaml.write_text(yaml.safe_dump({"execution": {"config": {
        "broker": "filesystem://",
        "backend": f"file://{results}",
        "config_source": {
            "broker_transport_options": {"data_folder_in": str(broker), "data_folder_out": str(broker),
                                         "control_folder": str(broker / "control"), "polling_interval": 0.2},
            "worker_prefetch_multiplier": 1, "task_acks_late": True, "worker_enable_remote_control": False,
        },
    }}}))
    env = {**os.environ, "DAGSTER_HOME": str(home), "WATTCOUNTS_HOME": str(fleet_dir / "home"),
           "WATTCOUNTS_STORE": f"file://{store}", "WATTCOUNTS_EXPERIMENTS": str(SWEEP),
           "WATTCOUNTS_EXECUTOR": "celery", "WATTCOUNTS_CELERY_CONFIG": str(celery_yaml),
           "FLEET_STACKS_DIR": str(fleet_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    keys = list(load_experiments([SWEEP]))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(experiment_partitions.name, keys)

    workers = {name: start_worker(args, env, fleet_dir / f"{name}.log") for name, args in {
        "host-cpu": ["cpu", "1"], "host-gpu": ["gpu", "1"], "cpu-stages": ["--cpu-stages", "2"]}.items()}
    started = time.monotonic()
    driver = subprocess.Popen([sys.executable, str(TESTS / "helpers" / "fleet_driver.py")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = driver.communicate(timeout=240)
    except subprocess.TimeoutExpired:  # a hang: fail with what the driver and the workers said, not a bare timeout
        timed_out = True
        # the driver and its run processes write their stacks (faulthandler); Celery logs its workers' (its cry handler)
        for process in (driver, *workers.values()):
            os.killpg(process.pid, signal.SIGUSR1)
        time.sleep(3)
    finally:
        for process in (driver, *workers.values()):  # the driver's run processes are in its group
            stop(process)
    elapsed_s = time.monotonic() - started
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in fleet_dir.glob("*.log"))
    stacks = "\n".join(f"--- {p.name}\n{p.read_text()[:3000]}" for p in fleet_dir.glob("stacks-*.txt"))  # innermost first
    if timed_out:
        stdout, stderr = driver.communicate()
        pytest.fail(f"the fleet sweep did not finish in 240 s\n--- driver stderr\n{stderr[-4000:]}\n{logs}\n{stacks}")
    assert driver.returncode == 0, f"{stderr[-4000:]}\n{logs}"
    runs = json.loads(stdout.strip().splitlines()[-1])

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_ids = [rid for ids in runs.values() for rid in ids.values()]
        statuses = {rid: instance.get_run_by_id(rid).status for rid in run_ids}
        assert len(run_ids) == 2 * len(keys) and set(statuses.values()) == {dg.DagsterRunStatus.SUCCESS}, statuses
        steps = spans(instance, run_ids)

    t0 = min(s.start_s for s in steps)
    print(f"\n2-host sweep, {len(keys)} partitions, {elapsed_s:.1f} s (workers started to driver done):")
    for s in sorted(steps, key=lambda s: s.start_s):
        print(f"  {s.start_s - t0:6.2f} → {s.end_s - t0:6.2f} s  {s.tag or '-':4} {s.step:23} {s.worker:28} {s.partition}")

    device = [s for s in steps if s.step in DEVICE_STAGES]
    cpu_stage = [s for s in steps if s.step == "validated_measurements"]
    assert len(device) == 2 * len(keys) and len(cpu_stage) == len(keys)
    # each device stage ran on the worker claiming its partition's tag
    assert all(s.worker.startswith(f"measure-{s.tag}-") for s in device), [(s.tag, s.worker) for s in device]
    assert {s.tag for s in device} == {"cpu", "gpu"}
    # never two device stages of one tag at once (one device per tag here)
    for a, b in combinations(device, 2):
        if a.tag == b.tag:
            assert not a.overlaps(b), f"{a} overlaps {b}"
    # the two hosts measured at the same time
    measure = [s for s in device if s.step == "measurements"]
    assert any(a.overlaps(b) for a, b in combinations(measure, 2) if a.tag != b.tag)
    # CPU stages ran in parallel, on the CPU-stage worker
    assert all(s.worker.startswith("cpu-stages@") for s in cpu_stage), [s.worker for s in cpu_stage]
    assert any(a.overlaps(b) for a, b in combinations(cpu_stage, 2))

    # one store: the aggregate stage reads every host's results from it
    experiments = ExperimentsResource(files=[str(SWEEP)])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiment_partitions.name, keys)
        result = dg.materialize(list(defs.assets or []), selection=["release_tables", "configurations"], instance=instance,
                                resources={**(defs.resources or {}), "experiments": experiments,
                                           "io_manager": TableStoreIOManager(base_dir=f"file://{store}")})
    configs = result.output_for_node("configurations")
    frame = configs if not isinstance(configs, dict) else configs[next(iter(configs))]
    assert sorted(frame["configuration_id"]) == sorted(keys)
