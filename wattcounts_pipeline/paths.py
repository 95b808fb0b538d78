"""Where Watt Counts keeps its files: everything lives under one WATTCOUNTS_HOME folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = Path(__file__).resolve().parent
SCHEMAS_DIR = REPO_ROOT / "schemas" if (REPO_ROOT / "schemas").is_dir() else PACKAGE_ROOT / "_schemas"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
DATASET_CARD_DIR = REPO_ROOT / "dataset_card" if (REPO_ROOT / "dataset_card").is_dir() else PACKAGE_ROOT / "_dataset_card"
MODELS_DIR = REPO_ROOT / "models"


def home() -> Path:
    """The root of all outputs: $WATTCOUNTS_HOME, else `.wattcounts/` in the checkout (git-ignored)."""
    root = Path(os.environ.get("WATTCOUNTS_HOME") or REPO_ROOT / ".wattcounts")
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(*parts: str) -> Path:
    """A folder under home(), created on first use."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
