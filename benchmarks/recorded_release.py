"""Build a release from the recorded GPU sweeps alone and print its checksums: the release-level half of the
bit-for-bit check of a storage change (`measurements_roundtrip.py` is the table-level half).

Usage:  python benchmarks/recorded_release.py OUT_DIR > checksums.txt
Every configuration recorded under data/measurements/ goes the way the default pipeline takes it: the rows
`find_recorded` serves the `measurements` asset, `validate_table` for runs and requests (as
`validated_measurements`), `collect_tables`'s concatenation, `aggregate` and `build_release`, without the
CPU partitions (measured live, never the same twice), quality scores or submissions. Run it with the code
and data before a change and after; identical output means the release tables are byte-identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.hub.release import build_release
from wattcounts_pipeline.sweep import done_keys, find_recorded

ROOT = Path("data") / "measurements"


def main() -> int:
    out = Path(sys.argv[1])
    folders = sorted(p for p in ROOT.iterdir() if p.is_dir())
    keys = sorted(set().union(*(done_keys(f) for f in folders)))
    parts: dict[str, list[pd.DataFrame]] = {"runs": [], "requests": [], "power_traces": []}
    quarantined = 0
    for key in keys:
        _, tables = find_recorded(key, folders)
        for name in ("runs", "requests"):
            result = validate_table(name, tables[name], source=f"measurements[{key}].{name}")
            quarantined += len(result.quarantine) if result.quarantine is not None else 0
            parts[name].append(result.valid)
        parts["power_traces"].append(tables["power_traces"])
    tables = {name: pd.concat([p for p in frames if not p.empty], ignore_index=True) for name, frames in parts.items()}
    tables["quality"] = load_contract("quality").empty_frame()
    tables["configurations"] = aggregate(tables["runs"], tables["requests"], tables["quality"])
    folder = build_release(tables, "0.0.1", out)
    print(f"# {len(keys)} configurations, quarantined rows {quarantined}, "
          + ", ".join(f"{n} {len(f)}" for n, f in tables.items()))
    print((folder / "checksums.sha256").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
