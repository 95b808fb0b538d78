"""Hardware tags, profiles, the run config that places a device run, the worker's hardware guard and the
URL store, without a cluster or a broker (the full paths: test_fleet_celery/_k8s/_postgres)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from tests.helpers import REPO
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.hardware import hardware_tag, load_profiles, profile_for, queue_for, split_tag
from wattcounts_pipeline.core.specs import ExperimentSpec, load_experiments
from wattcounts_pipeline.defs.fleet import (
    FleetExperimentsResource,
    device_run_config,
    executor_kind,
    fleet_executor,
    partition_hardware,
)
from wattcounts_pipeline.defs.io import COMPLETE, TableStoreIOManager, read_url_value, write_url_value

FLEET_GPU = REPO / "tests" / "data" / "fleet_gpu.yaml"


def _specs() -> dict[str, ExperimentSpec]:
    return {hardware_tag(s): s for s in load_experiments([FLEET_GPU]).values()}


def test_tags_follow_requires_hardware_and_gpu_count() -> None:
    assert sorted(_specs()) == ["cpu", "gpu", "gpu-h100", "gpu-h200-x2"]
    assert split_tag("gpu-h200-x2") == ("gpu-h200", 2) and split_tag("cpu") == ("cpu", 1)
    assert queue_for("gpu-h100") == "measure-gpu-h100" and queue_for("recorded") == "dagster"


def test_profiles_scale_gpus_and_refuse_unknown_kinds(tmp_path: Path) -> None:
    profiles = load_profiles(REPO / "deploy" / "hardware.yaml")
    profile, devices = profile_for("gpu-h200-x2", profiles)
    config = profile.k8s_config(devices)
    assert config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert config["pod_spec_config"]["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert profiles["gpu-h200"].resources["limits"]["nvidia.com/gpu"] == "1"  # the profile itself is untouched
    with pytest.raises(SpecError, match="no hardware profile for 'gpu-b200'"):
        profile_for("gpu-b200", profiles)
    bad = tmp_path / "hw.yaml"
    bad.write_text("hardware:\n  gpu: {node_selectr: {a: b}}\n")
    with pytest.raises(SpecError, match="unknown keys"):
        load_profiles(bad)


def test_device_run_config_per_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    assert device_run_config("gpu-h100", "celery") == {"execution": {"config": {"queue": "measure-gpu-h100"}}}
    assert device_run_config("recorded", "celery") == {"execution": {"config": {"queue": "dagster"}}}
    assert device_run_config("gpu-h100", "") == {}  # one machine: the measurement pool does it
    steps = device_run_config("gpu-h100", "k8s")["execution"]["config"]["per_step_k8s_config"]
    assert sorted(steps) == ["measurements", "quality_scores"]
    monkeypatch.setenv("WATTCOUNTS_EXECUTOR", "slurm")
    with pytest.raises(SpecError, match="WATTCOUNTS_EXECUTOR"):
        executor_kind()
    monkeypatch.delenv("WATTCOUNTS_EXECUTOR")
    assert fleet_executor() is None  # the single-machine default keeps Dagster's own executor


def test_worker_refuses_a_spec_of_other_hardware(tmp_path: Path) -> None:
    keys = {hardware_tag(s): k for k, s in load_experiments([FLEET_GPU]).items()}
    cpu_worker = FleetExperimentsResource(files=[str(FLEET_GPU)], recorded=[str(tmp_path)], serves=["cpu"])
    assert cpu_worker.spec(keys["cpu"]).key == keys["cpu"]
    with pytest.raises(SpecError, match="needs hardware 'gpu-h100'.*serves \\['cpu'\\]"):
        cpu_worker.spec(keys["gpu-h100"])
    # rows recorded on another host need no device: any worker serves them
    (tmp_path / "runs.jsonl").write_text(f'{{"configuration_id": "{keys["gpu-h100"]}"}}\n')
    assert partition_hardware(keys["gpu-h100"], cpu_worker) == "recorded"
    assert cpu_worker.spec(keys["gpu-h100"]).key == keys["gpu-h100"]
    # the fleet registers GPU specs even where the registering host has no GPU (this one has none)
    assert sorted(cpu_worker.measurable_specs()) == sorted(keys.values())


def test_url_store_round_trip_and_unfinished_partitions_stay_invisible() -> None:
    root = "memory://wattcounts-test-store"
    frames = {"runs": pd.DataFrame({"energy_j": [1.5, 2.5]}), "requests": pd.DataFrame({"ttft_s": [0.1]})}

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
    def rows(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
        return {name: frame.assign(part=context.partition_key) for name, frame in frames.items()}

    @dg.asset
    def merged(rows: dict[str, pd.DataFrame]) -> pd.DataFrame:
        return rows["runs"]

    io_manager = TableStoreIOManager(base_dir=root)
    for key in ("a", "b"):
        assert dg.materialize([rows], partition_key=key, resources={"io_manager": io_manager}).success
    folder = UPath(root) / "rows" / "b"
    assert read_url_value(folder)["runs"]["energy_j"].tolist() == [1.5, 2.5]
    (folder / COMPLETE).unlink()  # as if the host writing "b" died before its marker
    result = dg.materialize([rows, merged], selection=["merged"], resources={"io_manager": io_manager})
    assert result.output_for_node("merged")["part"].tolist() == ["a", "a"]  # "b" is absent, not half-read
    write_url_value(folder, {"runs": frames["runs"]})  # rewriting drops files the new value lacks
    assert sorted(p.name for p in folder.iterdir()) == [COMPLETE, "runs.parquet"]


@pytest.mark.parametrize("executor", ["", "celery"])
def test_definitions_load_with_their_backfill_policy(executor: str) -> None:
    """Every job resolves: on one machine the single-run policy, on a fleet per-partition tags and run config
    (Dagster refuses the two together, and only loading the whole repository shows it)."""
    code = ("import dagster as dg; from wattcounts_pipeline.definitions import defs; "
            "dg.Definitions.validate_loadable(defs); defs.get_repository_def().get_all_jobs(); "
            "print(defs.get_assets_def('measurements').backfill_policy)")
    env = {**os.environ, "WATTCOUNTS_EXECUTOR": executor}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert ("single_run" in out) == (not executor), out
