"""The Kubernetes path, checked offline with the real dagster-k8s code: the definitions load with the
k8s_job_executor, each partition's device steps get its hardware's pod, and the deploy/ files load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData
from dagster_celery.cli import get_validated_config
from dagster_k8s import K8sRunLauncher

from tests.helpers import REPO, TESTS
from wattcounts_pipeline.core.hardware import load_profiles

DEPLOY = REPO / "deploy"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "WATTCOUNTS_HOME": "/tmp/wattcounts-k8s-test", **extra}


def test_definitions_load_with_the_k8s_executor_and_place_each_partition() -> None:
    env = _env(WATTCOUNTS_EXECUTOR="k8s", WATTCOUNTS_EXPERIMENTS=str(REPO / "tests" / "data" / "fleet_gpu.yaml"))
    dagster = Path(sys.executable).parent / "dagster"
    check = subprocess.run([str(dagster), "definitions", "validate", "-m", "wattcounts_pipeline.definitions"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = subprocess.run([sys.executable, str(TESTS / "helpers" / "fleet_k8s_probe.py")], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr[-3000:]
    out = json.loads(probe.stdout)
    assert out["executors"] == {"measure_on_hardware": "k8s", "validate_measured": "k8s"}
    assert out["implicit_executor"] == "k8s"

    by_tag = {p["tags"]["wattcounts/hardware"]: p for p in out["partitions"].values()}
    assert sorted(by_tag) == ["cpu", "gpu", "gpu-h100", "gpu-h200-x2"]
    for tag, part in by_tag.items():
        assert part["run_config_valid"], tag
        assert part["stepped"] == ["measurements", "quality_scores"], tag  # only the device stages get the pod
        print(f"{tag:12} node_selector={part['pod']['node_selector']} limits={part['pod']['limits']}")
    h100, h200x2 = by_tag["gpu-h100"]["pod"], by_tag["gpu-h200-x2"]["pod"]
    assert h100["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert h100["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in h100["tolerations"])
    assert h200x2["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert h200x2["limits"]["nvidia.com/gpu"] == "2"  # a 2-GPU configuration asks for two whole GPUs
    assert by_tag["gpu"]["pod"]["limits"]["nvidia.com/gpu"] == "1" and not by_tag["gpu"]["pod"]["node_selector"]
    cpu = by_tag["cpu"]["pod"]
    assert "nvidia.com/gpu" not in cpu["limits"] and cpu["limits"]["cpu"] == cpu["requests"]["cpu"]


def test_deploy_instance_files_validate_against_dagster(tmp_path: Path) -> None:
    for name in ("k8s", "celery"):
        home = tmp_path / name
        home.mkdir()
        (home / "dagster.yaml").write_text((DEPLOY / name / "dagster.yaml").read_text())
        config, _ = dagster_instance_config(str(home))  # dagster's own schema check of the whole file
        limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
        assert {limit["key"] for limit in limits} == {"wattcounts/hardware"}
        assert config["storage"]["postgres"]["postgres_db"]["hostname"] == {"env": "DAGSTER_PG_HOST"}


def test_k8s_run_launcher_config_instantiates(tmp_path: Path) -> None:
    """The launcher section builds a K8sRunLauncher (pointed at a kubeconfig instead of in-cluster config,
    the one change: there is no cluster here, and building it only reads the config)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "lab", "user": {"token": "unused"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
    }))
    section = yaml.safe_load((DEPLOY / "k8s" / "dagster.yaml").read_text())["run_launcher"]
    config = {**section["config"], "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    launcher = ConfigurableClassData(section["module"], section["class"], yaml.safe_dump(config)).rehydrate(
        as_type=K8sRunLauncher)
    assert launcher.job_namespace == "wattcounts"
    assert "WATTCOUNTS_EXECUTOR=k8s" in launcher.env_vars


def test_helm_values_match_the_instance_file() -> None:
    """values.yaml (the chart's input; no helm here to render it) says what deploy/k8s/dagster.yaml says."""
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "k8s" / "dagster.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "wattcounts_pipeline.definitions"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["WATTCOUNTS_EXECUTOR"] == "k8s"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["concurrency"]["runs"]["tagConcurrencyLimits"] == instance["concurrency"]["runs"][
        "tag_concurrency_limits"]
    assert values["concurrency"]["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert env["WATTCOUNTS_STORE"] in {e.split("=", 1)[1] for e in instance["run_launcher"]["config"]["env_vars"]
                                       if e.startswith("WATTCOUNTS_STORE=")}
    profiles = load_profiles(DEPLOY / "hardware.yaml")
    limited = {limit["value"] for limit in instance["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limited <= set(profiles), "every limited tag has a hardware profile"


def test_celery_worker_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/celery/celery.yaml through the same check `dagster-celery worker start -y` runs."""
    monkeypatch.setenv("WATTCOUNTS_CELERY_BROKER", "redis://broker.lab.example:6379/0")
    monkeypatch.setenv("WATTCOUNTS_CELERY_BACKEND", "redis://broker.lab.example:6379/1")
    config = get_validated_config(str(DEPLOY / "celery" / "celery.yaml"))
    assert config["broker"] == "redis://broker.lab.example:6379/0"
    assert config["config_source"]["worker_prefetch_multiplier"] == 1
