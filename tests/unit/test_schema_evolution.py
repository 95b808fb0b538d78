"""Releases stay readable as the contracts evolve.

`tests/fixtures/releases/v0.1.0` was built with schema version 1 of every table and is never rebuilt.
When a contract changes, this test says whether old releases still load and validate; a change that
breaks them needs a version bump in schemas/<table>.yaml and a migration note in the changelog.
"""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

from tests.helpers import TESTS
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.hub.release import verify_checksums

OLD = TESTS / "fixtures" / "releases" / "v0.1.0"


def test_old_release_is_intact_and_loads_with_datasets() -> None:
    verify_checksums(OLD)
    configs = datasets.load_dataset(str(OLD), "configurations", split="train")
    assert len(configs) > 0 and "energy_per_token_j" in configs.column_names


@pytest.mark.parametrize("table", ["configurations", "runs", "quality"])
def test_old_release_validates_against_current_contracts(table: str) -> None:
    manifest = json.loads((OLD / "release.json").read_text())
    built_with = manifest["tables"][table]["schema_version"]
    contract = load_contract(table)
    frame = pd.read_parquet(OLD / "data" / f"{table}.parquet")
    result = validate_table(table, frame, source=f"{OLD.name}/{table}.parquet")
    if contract.version == built_with:
        assert result.ok, result.failures
    else:  # a bumped contract must still read the old columns it kept, and fill the new ones it requires
        filled = {c.name for c in contract.columns if c.nullable or c.backfill is not None}
        assert set(frame.columns) >= set(contract.column_names) - filled
        assert result.ok, result.failures
