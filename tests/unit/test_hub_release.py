"""Release folders: layout, dataset card, changelog and contract checks (no servers)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import pandas as pd
import pytest
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard

from tests.helpers import hubdata
from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.errors import ReleaseError
from wattcounts_pipeline.hub import build_release
from wattcounts_pipeline.hub.release import verify_checksums, version_key


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("releases")
    v1 = build_release(hubdata.release_tables(), "v0.1.0", out, context={"electricity price": "0.15 USD/kWh"})
    v2_tables = hubdata.release_tables(scale=1.1, batch_sizes=(1, 4, 32))
    del v2_tables["quality"]
    v2 = build_release(v2_tables, "0.2.0", out, previous=v1)
    return {"v0.1.0": v1, "0.2.0": v2}


@pytest.mark.parametrize("bad", ["1.0", "v1", "release-1", "v01.2.3", "1.2.3.4", "latest", ""])
def test_version_must_be_semantic(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="not semantic"):
        build_release(hubdata.release_tables(), bad, tmp_path)


def test_version_order() -> None:
    assert version_key("v1.2.3") == version_key("1.2.3")
    assert version_key("1.0.0-rc.1") < version_key("1.0.0") < version_key("1.0.1") < version_key("1.10.0")


def test_release_layout(releases: dict[str, Path]) -> None:
    v1 = releases["v0.1.0"]
    files = sorted(p.relative_to(v1).as_posix() for p in v1.rglob("*") if p.is_file())
    assert files == ["CHANGELOG.md", "README.md", "checksums.sha256", "data/configurations.parquet",
                     "data/quality.parquet", "data/runs.parquet", "figures/energy_per_token.png", "figures/quality_vs_energy.png", "release.json",
                     "schemas/configurations.yaml", "schemas/quality.yaml", "schemas/runs.yaml"]
    verify_checksums(v1)
    assert (v1 / "figures" / "energy_per_token.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in v1.parent.iterdir() if p.name.startswith(atomic.STAGING)], "staging folders left behind"


def test_release_loads_with_datasets(releases: dict[str, Path]) -> None:
    v1 = releases["v0.1.0"]
    configs = datasets.load_dataset(str(v1), "configurations", split="train")
    expected = hubdata.configurations()
    assert configs.num_rows == len(expected)
    assert configs.column_names == load_contract("configurations").column_names
    assert sorted(configs["configuration_id"]) == sorted(expected["configuration_id"])
    assert datasets.load_dataset(str(v1), "runs", split="train").num_rows == 3 * len(expected)
    assert datasets.load_dataset(str(v1), split="train").column_names == configs.column_names  # default config


def test_card_yaml_validates(releases: dict[str, Path]) -> None:
    card = DatasetCard.load(releases["v0.1.0"] / "README.md", ignore_metadata_errors=False)
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert "energy" in data["tags"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert configs["configurations"]["default"] is True
    assert configs["runs"]["data_files"] == [{"split": "train", "path": "data/runs.parquet"}]
    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    for name in ("configurations", "runs", "quality"):
        features = infos[name].features
        assert {k: v.dtype for k, v in features.items()} == {
            k: spec["dtype"] for k, spec in load_contract(name).hf_features().items()}
        assert infos[name].splits["train"].num_examples == len(pd.read_parquet(
            releases["v0.1.0"] / "data" / f"{name}.parquet"))


def test_card_column_tables_match_contracts(releases: dict[str, Path]) -> None:
    """Drift check: the card's column docs are exactly each contract's markdown_table()."""
    text = (releases["v0.1.0"] / "README.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"<!-- columns:(\w+) -->\n(.*?)\n<!-- /columns:\1 -->", text, flags=re.DOTALL))
    assert set(sections) == {"configurations", "runs", "quality"}
    for name, table in sections.items():
        assert table == load_contract(name).markdown_table()


def test_card_summaries(releases: dict[str, Path]) -> None:
    text = (releases["v0.1.0"] / "README.md").read_text(encoding="utf-8")
    assert "| electricity price | 0.15 USD/kWh |" in text
    assert "| `nvml_counter` | 3 |" in text and "| `estimate` | 3 |" in text
    assert "NVIDIA H100 80GB HBM3 x1" in text and "cpu-epyc-x16" in text
    best = hubdata.configurations().sort_values("energy_per_token_j").iloc[0]
    top = text.split("## Most energy-efficient configurations")[1]
    first_row = [line for line in top.splitlines() if line.startswith("| ")][1]
    assert f"| {best['model']} |" in first_row and f"| {best['batch_size']} |" in first_row
    assert 'revision="v0.1.0"' in text


def test_changelog_against_previous(releases: dict[str, Path]) -> None:
    log = (releases["0.2.0"] / "CHANGELOG.md").read_text(encoding="utf-8")
    assert log.index("## 0.2.0 (since v0.1.0)") < log.index("## v0.1.0")  # newest first, history kept
    # batch 16 → 32 for both models: 2 added, 2 removed; the 4 kept rows changed values (scale 1.1)
    version = {name: load_contract(name).version for name in ("configurations", "runs", "quality")}
    assert f"| `configurations` | 2 | 2 | 4 | 0 | {version['configurations']} |" in log
    assert f"| `runs` | 6 | 6 | 12 | 0 | {version['runs']} |" in log
    assert f"| `quality` | 0 | 1 | 0 | 0 | {version['quality']} → — |" in log
    manifest = json.loads((releases["0.2.0"] / "release.json").read_text())
    assert manifest["previous"] == "v0.1.0" and set(manifest["tables"]) == {"configurations", "runs"}


def test_changelog_reports_schema_version_change(releases: dict[str, Path], tmp_path: Path) -> None:
    previous = Path(shutil.copytree(releases["v0.1.0"], tmp_path / "old" / "v0.1.0"))
    manifest = json.loads((previous / "release.json").read_text())
    manifest["tables"]["runs"]["schema_version"] = 0  # as if v0.1.0 had been built under an older runs contract
    (previous / "release.json").write_text(json.dumps(manifest))
    out = build_release(hubdata.release_tables(), "v0.1.1", tmp_path / "new", previous=previous)
    log = (out / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "| `runs` | 0 | 0 | 0 | 18 | 0 → 1 |" in log
    assert "Schema changes: `runs` 0 → 1." in log


def test_build_is_deterministic(tmp_path: Path) -> None:
    """Same tables, same version → byte-identical release, so republishing is a no-op."""
    a = build_release(hubdata.release_tables(), "v0.1.0", tmp_path / "a")
    b = build_release(hubdata.release_tables(), "v0.1.0", tmp_path / "b")
    assert (a / "checksums.sha256").read_text() == (b / "checksums.sha256").read_text()


def test_rejects_rows_that_break_the_contract(tmp_path: Path) -> None:
    tables = hubdata.release_tables()
    tables["configurations"].loc[0, "batch_size"] = 0
    tables["configurations"].loc[1, "energy_method"] = "guess"
    with pytest.raises(ReleaseError, match="breaks its contract") as err:
        build_release(tables, "v0.1.0", tmp_path)
    assert "batch_size" in str(err.value) and "energy_method" in str(err.value)
    assert not (tmp_path / "v0.1.0").exists()


def test_rejects_missing_default_unknown_table_and_old_version(releases: dict[str, Path], tmp_path: Path) -> None:
    tables = hubdata.release_tables()
    with pytest.raises(ReleaseError, match="configurations"):
        build_release({"runs": tables["runs"]}, "v0.1.0", tmp_path)
    with pytest.raises(ReleaseError, match="no usable contract"):
        build_release({**tables, "mystery": pd.DataFrame({"x": [1]})}, "v0.1.0", tmp_path)
    with pytest.raises(ReleaseError, match="newer than"):
        build_release(tables, "v0.1.0", tmp_path, previous=releases["v0.1.0"])


@pytest.mark.parametrize(("engine_args", "mode"), [
    ({}, "eager"), ({"compile": False}, "eager"), ({"compile": True}, "compiled"),
    ({"compile": "graphs"}, "compiled-graphs"), ({"compile": "capture"}, "cuda-graphs")])
def test_figure_series_keep_the_compile_paths_apart(engine_args: dict[str, object], mode: str) -> None:
    """Four transformers paths on one card are four curves, never one averaged line."""
    from wattcounts_pipeline.hub.figures import compile_mode

    assert compile_mode(json.dumps(engine_args)) == mode
