"""What every host of a fleet must see lives in the one asset store: contributed rows, quarantine, release tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import datasets
import pytest

from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.resources import ExperimentsResource, submission_partitions
from wattcounts_pipeline.hub.release import build_release
from wattcounts_pipeline.submissions.example import write_example_bundle
from wattcounts_pipeline.submissions.pack import pack_bundle
from wattcounts_pipeline.submissions.store import bundle_id


def _materialize(instance: dg.DagsterInstance, selection: list[str], partition_key: str | None = None,
                 ) -> dg.ExecuteInJobResult:
    resources = {**(defs.resources or {}), "experiments": ExperimentsResource(files=[])}  # no measured partitions
    return dg.materialize(list(defs.assets or []), selection=selection, instance=instance, resources=resources,
                          partition_key=partition_key)


def test_accepted_bundle_joins_the_release_from_the_shared_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    home, store = tmp_path / "home", tmp_path / "shared-store"
    monkeypatch.setenv("WATTCOUNTS_HOME", str(home))
    monkeypatch.setenv("WATTCOUNTS_STORE", str(store))  # as on a fleet: the asset store is not under home
    write_example_bundle(tmp_path / "bundle")
    (home / "submissions" / "inbox").mkdir(parents=True)
    archive = pack_bundle(tmp_path / "bundle", home / "submissions" / "inbox" / "bundle.tar.gz")
    key = bundle_id(archive)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(submission_partitions.name, [key])
        assert _materialize(instance, ["submissions"], partition_key=key).success
        assert (store / "submissions" / key).is_dir()
        # another host: no local submissions archive, only the shared store
        shutil.rmtree(home / "submissions", onerror=lambda f, p, e: (Path(p).chmod(0o700), f(p)))
        tables = _materialize(instance, ["release_tables"]).output_for_node("release_tables")

    assert set(tables["runs"]["source"]) == {f"submission:{key}"}
    tables["configurations"] = aggregate(tables["runs"], tables["requests"], tables["quality"])
    release = build_release(tables, "v0.1.0", tmp_path / "releases")
    credits = datasets.load_dataset(str(release), "submissions", split="train").to_pandas()
    assert list(credits["bundle_id"]) == [key]
    assert credits["contributor_name"].iloc[0] == "Ada Example"
    configs = datasets.load_dataset(str(release), "configurations", split="train").to_pandas()
    assert set(configs["source"]) == {f"submission:{key}"}


def test_a_partition_stored_by_an_older_version_is_left_out_with_a_warning(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """0.x stored a summary (no rows) per bundle: the release goes on without it and says which to materialize."""
    from wattcounts_pipeline.defs.io import store_folder, write_stored
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(submission_partitions.name, ["0123456789abcdef"])
        write_stored(store_folder("submissions", "0123456789abcdef"), {"bundle_id": "0123456789abcdef",
                                                                       "status": "accepted"})
        result = _materialize(instance, ["release_tables"])
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    tables = result.output_for_node("release_tables")
    assert "submissions" not in tables and tables["runs"].empty
    assert any("hold no tables" in m and "0123456789abcdef" in m for m in logs), logs


def test_quarantined_rows_land_in_the_shared_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row that fails validation is kept, with its reason, where every host of a fleet can read it (a URL store)."""
    import pandas as pd

    from tests.helpers import REPO, TESTS
    from wattcounts_pipeline.defs.io import is_stored, read_stored, store_folder
    from wattcounts_pipeline.defs.resources import register_experiments
    from wattcounts_pipeline.defs.validate import QUARANTINE
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WATTCOUNTS_STORE", (tmp_path / "shared").as_uri())
    recorded = tmp_path / "recorded"
    shutil.copytree(REPO / "data" / "measurements" / "h200-2026-11-26", recorded)
    runs = pd.read_parquet(recorded / "runs.parquet")
    first = runs.index[runs["configuration_id"].str.startswith("qwen2.5-0.5b-transformers-bf16-decode-128-256-b1-")][0]
    runs.loc[first, "energy_j"] = -1.0
    runs.to_parquet(recorded / "runs.parquet", index=False)
    experiments = ExperimentsResource(files=[str(TESTS / "data" / "gpu_subset.yaml")], recorded=[str(recorded)])
    with dg.instance_for_test() as instance:
        key = next(k for k in register_experiments(instance, experiments) if "-b1-" in k)
        result = dg.materialize(list(defs.assets or []), selection=["measurements", "validated_measurements"],
                                instance=instance, partition_key=key, raise_on_error=False,
                                resources={**(defs.resources or {}), "experiments": experiments})
    assert not all(c.passed for c in result.get_asset_check_evaluations())  # the blocking check says so
    folder = store_folder(QUARANTINE, key)
    assert is_stored(folder)  # URL store: its completion marker is written
    quarantined = read_stored(folder)["runs"]
    assert len(quarantined) == 1 and "energy_j" in quarantined.to_csv()
