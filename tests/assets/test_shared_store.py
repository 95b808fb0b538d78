"""Accepted bundles join the next release with their attribution."""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd
import pytest

from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.defs.aggregate import collect_tables
from wattcounts_pipeline.hub.release import build_release
from wattcounts_pipeline.submissions.example import write_example_bundle
from wattcounts_pipeline.submissions.pack import pack_bundle
from wattcounts_pipeline.submissions.store import ingest_bundle


def test_accepted_bundle_joins_the_release_with_attribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("WATTCOUNTS_HOME", str(home))
    (tmp_path / "inbox").mkdir()
    write_example_bundle(tmp_path / "bundle")
    archive = pack_bundle(tmp_path / "bundle", tmp_path / "inbox" / "bundle.tar.gz")
    result = ingest_bundle(archive, home / "submissions")
    assert result.status == "accepted", result.reasons

    tables = collect_tables({}, pd.DataFrame())
    assert set(tables["runs"]["source"]) == {f"submission:{result.bundle_id}"}
    tables["configurations"] = aggregate(tables["runs"], tables["requests"], tables["quality"])
    release = build_release(tables, "v0.1.0", tmp_path / "releases")

    credits = datasets.load_dataset(str(release), "submissions", split="train").to_pandas()
    assert list(credits["bundle_id"]) == [result.bundle_id]
    assert credits["contributor_name"].iloc[0] == "Ada Example"
    configs = datasets.load_dataset(str(release), "configurations", split="train").to_pandas()
    assert set(configs["source"]) == {f"submission:{result.bundle_id}"}
