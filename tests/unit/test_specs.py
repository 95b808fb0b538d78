from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import ExperimentSpec, load_experiment, load_experiments

ROOT = REPO
DEFAULT = ROOT / "experiments" / "default.yaml"


def test_default_experiment_covers_two_frameworks_and_precisions() -> None:
    specs = load_experiment(DEFAULT)
    assert len({s.framework for s in specs}) >= 2
    assert len({s.quantization for s in specs}) >= 2
    assert {s.model.weights for s in specs} == {"real", "random"}


def test_keys_are_stable_readable_and_unique() -> None:
    a = load_experiment(DEFAULT)
    b = load_experiment(DEFAULT)
    assert [s.key for s in a] == [s.key for s in b]
    assert len({s.key for s in a}) == len(a)
    for spec in a:
        assert spec.key.startswith(spec.model.name)
        assert len(spec.key.rsplit("-", 1)[1]) == 8


def test_same_spec_twice_is_one_partition(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text(DEFAULT.read_text().replace("name: default", "name: other"))
    merged = load_experiments([DEFAULT, copy])
    assert len(merged) == len(load_experiment(DEFAULT))


def test_round_trip_through_dict() -> None:
    for spec in load_experiment(DEFAULT):
        again = ExperimentSpec.from_dict(spec.to_dict())
        assert again == spec and again.key == spec.key


def test_changing_a_field_changes_the_key(tmp_path: Path) -> None:
    changed = tmp_path / "changed.yaml"
    changed.write_text(DEFAULT.read_text().replace("output_tokens: 32", "output_tokens: 33"))
    assert {s.key for s in load_experiment(changed)}.isdisjoint({s.key for s in load_experiment(DEFAULT)})


@pytest.mark.parametrize("mutation, message", [
    (("framework: llamacpp", "framework: tensorrt"), "framework must be one of"),
    (("model: tiny-llama\n    framework", "model: nope\n    framework"), "matrix[2].model: unknown model 'nope'"),
    (("weights: random", "weights: real"), "config-only source has random weights"),
    (("num_requests: 4", "num_requests: 0"), "num_requests: 0 outside 1..1e+06"),
])
def test_bad_specs_name_file_and_field(tmp_path: Path, mutation: tuple[str, str], message: str) -> None:
    bad = tmp_path / "bad.yaml"
    text = DEFAULT.read_text()
    assert mutation[0] in text
    bad.write_text(text.replace(mutation[0], mutation[1], 1))
    with pytest.raises(SpecError) as err:
        load_experiment(bad)
    assert str(bad) in str(err.value) and message in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_experiment(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("matrix: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_experiment(broken)


def test_a_broken_experiment_file_does_not_stall_the_others(tmp_path: Path) -> None:
    from wattcounts_pipeline.defs.resources import ExperimentsResource

    broken = tmp_path / "broken.yaml"
    broken.write_text(DEFAULT.read_text().replace("framework: llamacpp", "framework: tensorrt"))
    resource = ExperimentsResource(files=[str(broken), str(DEFAULT)])
    good = load_experiment(DEFAULT)
    assert set(resource.specs()) == {s.key for s in good}
    with pytest.raises(SpecError, match="no readable experiment file"):
        resource.spec("missing-12345678")


def test_sweep_skips_a_bad_experiment_file_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from wattcounts_pipeline.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmatrix:\n  - [not, a, mapping]\n")
    good = REPO / "experiments" / "default.yaml"
    out = tmp_path / "out"
    with caplog.at_level("ERROR"):
        code = main(["sweep", str(bad), str(good), "--out", str(out), "--only", "no-such-key"])
    assert code == 2  # the good file was read (nothing matched --only), the bad one reported, not silently
    assert "skipping" in caplog.text and "bad.yaml" in caplog.text
    assert main(["sweep", str(bad), "--out", str(out)]) == 2
