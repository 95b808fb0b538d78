"""Shared test setup: every test writes its state under a temporary WATTCOUNTS_HOME, never the checkout's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state root per test (a test may still point WATTCOUNTS_HOME elsewhere itself); no shared store."""
    home = tmp_path_factory.mktemp("wattcounts-home")
    monkeypatch.setenv("WATTCOUNTS_HOME", str(home))
    monkeypatch.delenv("WATTCOUNTS_STORE", raising=False)
    return home
