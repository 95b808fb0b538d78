"""A partition carries its own spec: stages read the spec stored at registration, not today's YAML."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.partition_specs import FOLDER, spec_row, store_specs, stored_keys, stored_spec
from wattcounts_pipeline.core.specs import load_experiment
from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.resources import ExperimentsResource, experiment_partitions, register_experiments

EXPERIMENT = """\
name: edit-me
defaults: {repetitions: 1, warmup_requests: 0, idle_s: 0.1}
models:
  tiny-llama: {source: "config:models/tiny-llama", weights: random, architecture: llama}
workloads:
  tiny: {kind: fixed, input_tokens: 8, output_tokens: OUT, num_requests: 2}
matrix:
  - {model: tiny-llama, framework: transformers, quantization: BF16, dtype: bfloat16}
"""


def _experiment(path: Path, output_tokens: int) -> Path:
    path.write_text(EXPERIMENT.replace("OUT", str(output_tokens)))
    return path


def test_stored_spec_round_trips_in_the_sweep_row_format(tmp_path: Path) -> None:
    spec = load_experiment(_experiment(tmp_path / "e.yaml", 8))[0]
    assert store_specs([spec], tmp_path) == [spec.key]
    assert store_specs([spec], tmp_path) == []  # never written twice
    assert stored_spec(spec.key, tmp_path) == spec
    assert stored_keys(tmp_path) == {spec.key}
    row = json.loads((tmp_path / FOLDER / f"{spec.key}.json").read_text())
    assert row == spec_row(spec) and set(row) == {"configuration_id", "spec"}  # a sweep's specs.jsonl row
    assert stored_spec("other-12345678", tmp_path) is None


def test_a_stored_spec_under_the_wrong_key_or_broken_is_refused_with_its_file(tmp_path: Path) -> None:
    a = load_experiment(_experiment(tmp_path / "a.yaml", 8))[0]
    b = load_experiment(_experiment(tmp_path / "b.yaml", 9))[0]
    store_specs([a], tmp_path)
    wrong = tmp_path / FOLDER / f"{b.key}.json"
    wrong.write_text((tmp_path / FOLDER / f"{a.key}.json").read_text())
    with pytest.raises(SpecError, match=f"{wrong}.*not of partition"):
        stored_spec(b.key, tmp_path)
    wrong.write_text('{"configuration_id": "x", "spec": "{not json"}')
    with pytest.raises(SpecError, match=f"{wrong}: not a stored partition spec"):
        stored_spec(b.key, tmp_path)


def test_a_url_store_holds_the_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet's store is an fsspec URL: the registry is written and read through it, one object per key."""
    monkeypatch.setenv("WATTCOUNTS_STORE", (tmp_path / "shared").as_uri())
    spec = load_experiment(_experiment(tmp_path / "e.yaml", 8))[0]
    assert store_specs([spec]) == [spec.key]
    assert stored_spec(spec.key) == spec
    assert (tmp_path / "shared" / FOLDER / f"{spec.key}.json").is_file()


def test_editing_the_yaml_leaves_the_old_partition_measurable(tmp_path: Path) -> None:
    """Before: the old partition's spec vanished with the YAML edit, and its runs failed. Now it is read back."""
    path = _experiment(tmp_path / "edit.yaml", 8)
    experiments = ExperimentsResource(files=[str(path)])
    with dg.instance_for_test() as instance:
        (old,) = register_experiments(instance, experiments)
        _experiment(path, 12)
        (new,) = register_experiments(instance, experiments)
        assert new != old
        assert sorted(instance.get_dynamic_partitions(experiment_partitions.name)) == sorted([old, new])
        assert old not in experiments.specs()  # the YAML no longer has it ...
        assert experiments.spec(old).workload.output_tokens == 8  # ... the stored spec does
        result = dg.materialize(list(defs.assets or []), selection=["measurements"], instance=instance,
                                resources={**(defs.resources or {}), "experiments": experiments},
                                partition_key=old)
        assert result.success
        (event,) = result.asset_materializations_for_node("measurements")
        assert event.metadata["spec"].value["workload"]["output_tokens"] == 8
