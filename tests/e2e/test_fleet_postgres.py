"""The fleet's instance files on a real PostgreSQL server (Debian's, started here in a temp dir on a free
port): one host materializes a partition through the Kubernetes instance config, another host's config
(Celery's) reads the run, its steps and the materialization back from the same database."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from tests.helpers import REPO
from wattcounts_pipeline.core.specs import load_experiments
from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.io import TableStoreIOManager
from wattcounts_pipeline.defs.resources import ExperimentsResource, experiment_partitions

SWEEP = REPO / "tests" / "data" / "fleet.yaml"


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server bin folder (initdb, pg_ctl), else the one on PATH."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and (Path(found).parent / "initdb").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A throwaway server (trust auth on 127.0.0.1, fsync off), as the env vars deploy/*/dagster.yaml read.
    PostgreSQL refuses to run as root, so as root it runs as the `postgres` user the Debian package creates."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="wc-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster")
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": "dagster",
               "DAGSTER_PG_PASSWORD": "unused-with-trust-auth", "DAGSTER_PG_DB": "dagster"}
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def instance_home(tmp_path: Path, deploy: str) -> Path:
    home = tmp_path / deploy
    home.mkdir()
    shutil.copy(REPO / "deploy" / deploy / "dagster.yaml", home / "dagster.yaml")
    return home


def test_runs_written_on_one_host_read_back_on_another(postgres: dict[str, str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in postgres.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))
    key = next(k for k, s in load_experiments([SWEEP]).items() if s.workload.batch_size == 1)
    store = tmp_path / "store"

    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, "k8s"))) as gpu_host:
        assert isinstance(gpu_host.run_storage, PostgresRunStorage)
        assert isinstance(gpu_host.event_log_storage, PostgresEventLogStorage)
        assert isinstance(gpu_host.run_coordinator, QueuedRunCoordinator)
        gpu_host.add_dynamic_partitions(experiment_partitions.name, [key])
        result = dg.materialize(
            list(defs.assets or []), selection=["measurements"], partition_key=key, instance=gpu_host,
            resources={**(defs.resources or {}), "experiments": ExperimentsResource(files=[str(SWEEP)]),
                       "io_manager": TableStoreIOManager(base_dir=str(store))},
            tags={"wattcounts/hardware": "cpu"})
        assert result.success
        run_id = result.run_id
        # the measurement step held a slot of the `measurement` pool, kept in Postgres
        assert gpu_host.event_log_storage.supports_global_concurrency_limits
        assert gpu_host.event_log_storage.get_concurrency_info("measurement").slot_count == 16

    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, "celery"))) as head:
        assert isinstance(head.run_launcher, DefaultRunLauncher)
        run = head.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == key and run.tags["wattcounts/hardware"] == "cpu"
        steps = {r.step_key for r in head.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
        assert steps == {"measurements"}
        event = head.get_latest_materialization_event(dg.AssetKey("measurements"))
        assert event is not None and event.run_id == run_id
        assert event.asset_materialization.partition == key
        assert head.get_runs_count(dg.RunsFilter(tags={"wattcounts/hardware": "cpu"})) == 1
    assert (store / "measurements" / key / "runs.parquet").exists()
