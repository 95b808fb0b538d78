"""Where Watt Counts keeps its files: host-local files (caches, logs, the submissions inbox and archive, releases)
under one WATTCOUNTS_HOME folder; what every host of a fleet must see (asset values, the registered partition
specs, quarantine, the quality cache) under the one store root, $WATTCOUNTS_STORE, read through defs/io.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upath import UPath

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = Path(__file__).resolve().parent
SCHEMAS_DIR = REPO_ROOT / "schemas" if (REPO_ROOT / "schemas").is_dir() else PACKAGE_ROOT / "_schemas"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
DATASET_CARD_DIR = REPO_ROOT / "dataset_card" if (REPO_ROOT / "dataset_card").is_dir() else PACKAGE_ROOT / "_dataset_card"
MODELS_DIR = REPO_ROOT / "models"
STORE_ENV = "WATTCOUNTS_STORE"  # a folder or fsspec URL shared by every host; default WATTCOUNTS_HOME/assets


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


def store_root(base_dir: str = "") -> Path | UPath:
    """The shared store: `base_dir`, else $WATTCOUNTS_STORE (a folder or an fsspec URL such as
    `s3://bucket/wattcounts` that every host of a fleet reaches), else WATTCOUNTS_HOME/assets."""
    root = base_dir or os.environ.get(STORE_ENV, "")
    if not root:
        return subdir("assets")
    if "://" in root:
        from upath import UPath

        return UPath(root)
    return Path(root)
