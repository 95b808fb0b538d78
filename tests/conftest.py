"""Shared test setup: every test writes its state under a temporary WATTCOUNTS_HOME, never the checkout's, and is
marked by its folder: unit/ (plain library code), assets/ (Dagster assets, resources and checks), e2e/ (the whole
pipeline, fleets, the CLI and Hub round trips). `pytest -m unit` runs the fast part alone."""

from __future__ import annotations

from pathlib import Path

import pytest

SUITES = ("unit", "assets", "e2e")  # the folders under tests/, one marker each (pyproject.toml)


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state root per test (a test may still point WATTCOUNTS_HOME elsewhere itself); no shared store."""
    home = tmp_path_factory.mktemp("wattcounts-home")
    monkeypatch.setenv("WATTCOUNTS_HOME", str(home))
    monkeypatch.delenv("WATTCOUNTS_STORE", raising=False)
    return home


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        suite = item.path.parent.name
        if suite in SUITES:
            item.add_marker(suite)
