"""What changed since the previous release, per table by primary key, so users know whether to re-download."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.core.contracts import Contract

MANIFEST = "release.json"


@dataclass(frozen=True)
class TableDiff:
    table: str
    added: int
    removed: int
    changed: int
    unchanged: int
    schema_from: int | None
    schema_to: int | None


def read_manifest(release_dir: Path) -> dict:
    """The `release.json` of a built release (version, tables, row counts, schema versions)."""
    return json.loads((release_dir / MANIFEST).read_text(encoding="utf-8"))


def diff_release(previous: Path, frames: dict[str, pd.DataFrame], contracts: dict[str, Contract]) -> list[TableDiff]:
    """Rows added, removed and changed per table (matched on the current primary key), and schema bumps."""
    before = read_manifest(previous)["tables"]
    diffs = []
    for name in sorted(set(before) | set(frames)):
        old = pd.read_parquet(previous / "data" / f"{name}.parquet") if name in before else None
        new = frames.get(name)
        schema_from = before[name]["schema_version"] if name in before else None
        schema_to = contracts[name].version if name in frames else None
        if old is None or new is None:
            rows = len(new) if new is not None else 0
            gone = len(old) if old is not None else 0
            diffs.append(TableDiff(name, rows, gone, 0, 0, schema_from, schema_to))
            continue
        diffs.append(TableDiff(name, *_row_diff(old, new, list(contracts[name].primary_key)), schema_from, schema_to))
    return diffs


def _row_diff(old: pd.DataFrame, new: pd.DataFrame, key: list[str]) -> tuple[int, int, int, int]:
    if not key or any(k not in old.columns for k in key):  # no usable key: every row counts as replaced
        return len(new), len(old), 0, 0
    old_i, new_i = old.set_index(key), new.set_index(key)
    common = old_i.index.intersection(new_i.index)
    shared_cols = [c for c in new_i.columns if c in old_i.columns]
    # compare values, not labels: nullable and plain integer indexes hold the same keys
    a = old_i.loc[common, shared_cols].astype(object).to_numpy()
    b = new_i.loc[common, shared_cols].astype(object).to_numpy()
    differs = ((a != b) & ~(pd.isna(a) & pd.isna(b))).any(axis=1)
    if len(shared_cols) != len(new_i.columns) or len(shared_cols) != len(old_i.columns):
        differs[:] = True  # columns added or dropped: every kept row changed shape
    changed = int(differs.sum())
    return (len(new_i.index.difference(old_i.index)), len(old_i.index.difference(new_i.index)),
            changed, len(common) - changed)


def changelog_entry(version: str, previous_version: str | None, diffs: list[TableDiff],
                    rows: dict[str, int]) -> str:
    """One Markdown section for this release; the first release lists its tables instead of a diff."""
    if previous_version is None:
        lines = [f"## {version}", "", "First release.", "", "| table | rows |", "|---|---|"]
        lines += [f"| `{name}` | {n} |" for name, n in rows.items()]
        return "\n".join(lines) + "\n"
    lines = [f"## {version} (since {previous_version})", "",
             "| table | added | removed | changed | unchanged | schema version |", "|---|---|---|---|---|---|"]
    for d in diffs:
        schema = (str(d.schema_to) if d.schema_from == d.schema_to
                  else f"{_v(d.schema_from)} → {_v(d.schema_to)}")
        lines.append(f"| `{d.table}` | {d.added} | {d.removed} | {d.changed} | {d.unchanged} | {schema} |")
    bumps = [d for d in diffs if d.schema_from != d.schema_to]
    if bumps:
        lines += ["", "Schema changes: " + "; ".join(
            f"`{d.table}` {_v(d.schema_from)} → {_v(d.schema_to)}" for d in bumps) + "."]
    return "\n".join(lines) + "\n"


def _v(version: int | None) -> str:
    return "—" if version is None else str(version)
