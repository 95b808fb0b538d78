"""Which host measured each configuration, for leave-one-host-out: eager decode and server loops are bound by
the host CPU, and lent hosts with the same card differ by up to 2x there, so a new host is a question of its own.

The configurations table does not say which host measured a row. The run rows may carry a host fingerprint
(meters/host.py: CPU set, clock, a calibration time) but it is per process and noisy (the same card measured
62 and 120 ns in two calls of one day), so it is no identity. What identifies a host here is the measurement
folder: each folder under data/measurements/ is one device call on one lent machine, so the folder is the host
(a proxy: two calls may land on the same machine, and are then counted as two hosts). A configuration measured
in several folders is assigned the one holding most of its runs; ids are the release's (`configuration_keys`: a
spec measured on two cards is two configurations, the second with a hardware suffix).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wattcounts_pipeline.aggregate import configuration_keys
from wattcounts_pipeline.model.errors import ModelError

HOST_SOURCE = "measurement folder (one device call on one lent machine)"
HOST_COLUMNS = ("configuration_id", "run_id", "hardware_id", "started_at", "source")  # what configuration_keys reads


def folder_hosts(folders: list[Path]) -> pd.Series:
    """Release configuration id -> host label (the folder's name) over the `runs.parquet` of each folder."""
    parts = []
    for folder in folders:
        path = Path(folder) / "runs.parquet"
        if not path.is_file():
            raise ModelError(f"{path}: no runs table; a measurement folder holds runs.parquet")
        runs = pd.read_parquet(path)
        missing = sorted(set(HOST_COLUMNS) - set(runs.columns))
        if missing:
            raise ModelError(f"{path}: no column {', '.join(missing)}; the host key needs {', '.join(HOST_COLUMNS)}")
        runs = runs[list(HOST_COLUMNS)]
        parts.append(runs.assign(host=Path(folder).name))
    if not parts:
        return pd.Series(dtype=object, name="host_key")
    runs = pd.concat(parts, ignore_index=True)
    runs = runs.assign(configuration_id=configuration_keys(runs))
    counts = runs.groupby(["configuration_id", "host"]).size().reset_index(name="n_runs")
    counts = counts.sort_values(["configuration_id", "n_runs", "host"], ascending=[True, False, True])
    return counts.drop_duplicates("configuration_id").set_index("configuration_id")["host"].rename("host_key")


def attach_hosts(rows: pd.DataFrame, feats: pd.DataFrame, hosts: pd.Series) -> pd.DataFrame:
    """`feats` plus `host_key` ("" where the configuration has no known host), matched on configuration_id."""
    labels = rows["configuration_id"].map(hosts).fillna("").astype(str).to_numpy()
    return feats.assign(host_key=labels)
