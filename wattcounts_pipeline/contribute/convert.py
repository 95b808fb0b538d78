"""A sweep folder (what `wattcounts sweep` and `wattcounts measure` write) as a submission bundle, manifest filled.

The measured rows are taken as recorded, cut to the tables' contracts (columns only ingestion sets, such as
`runs.source`, are left out); the manifest's hardware and software come from the rows themselves, so they agree
with them by construction. Hardware specs the catalog lacks (a card it does not know) come from the caller
(`wattcounts measure --gpu-tdp-w ...`), never from editing a YAML inside the installed package.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.core.vocab import MEASURED_TABLES
from wattcounts_pipeline.measure.store import load_sweep, read_table

LICENSE = "CC-BY-4.0"
SET_BY_INGESTION = {"runs": ("source",)}
# Card specs a contributor may state for a GPU the catalog does not know (manifest `hardware.<field>`).
CARD_SPEC_FIELDS = ("gpu_tdp_w", "gpu_memory_gb", "gpu_memory_bandwidth_gb_s", "gpu_peak_bf16_tflops")


@dataclass(frozen=True)
class Contributor:
    """Who measured: credited in the dataset card (name, handle); contact is kept private in provenance."""

    name: str
    handle: str
    contact: str = ""
    affiliation: str = ""
    consent: bool = False

    def manifest(self) -> dict[str, str]:
        out = {"name": self.name, "handle": self.handle}
        out.update({k: v for k, v in (("contact", self.contact), ("affiliation", self.affiliation)) if v})
        return out


def memory_gb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """This host's memory in GB (1e9 bytes), or None where /proc/meminfo is absent."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) * 1024 / 1e9, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _first(runs: pd.DataFrame, column: str) -> Any:
    values = runs[column].dropna() if column in runs else pd.Series(dtype=object)
    return values.iloc[0] if len(values) else None


def hardware_from_rows(runs: pd.DataFrame, meter_info: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The manifest's `hardware` mapping, read off the run rows (and the sweep's meter.json for CUDA)."""
    gpu_count = int(runs["gpu_count"].max()) if "gpu_count" in runs and runs["gpu_count"].notna().any() else 0
    hardware: dict[str, Any] = {"gpu_count": gpu_count, "cpu_model": str(_first(runs, "cpu_model")),
                                "cpu_count": int(runs["cpu_count"].max())}
    if gpu_count:
        hardware["gpu_name"] = str(_first(runs, "gpu_name"))
        for column, key in (("gpu_power_limit_w", "gpu_power_limit_w"), ("driver_version", "driver_version")):
            value = _first(runs, column)
            if value is not None:
                hardware[key] = float(value) if key.endswith("_w") else str(value)
        if meter_info.get("cuda_driver_version"):
            hardware["cuda_version"] = str(meter_info["cuda_driver_version"])
    hardware.update({k: v for k, v in extra.items() if v is not None})
    return hardware


def software_from_rows(runs: pd.DataFrame) -> dict[str, str]:
    """Versions recorded in the rows' software_json (strings; Python always present)."""
    software: dict[str, str] = {}
    text = _first(runs, "software_json")
    if text:
        software.update({str(k).replace("_", "-"): str(v) for k, v in json.loads(text).items()})
    software.setdefault("python", platform.python_version())
    return software


def _specs(folder: Path, keys: set[str]) -> list[dict[str, Any]]:
    specs = read_table(folder, "specs")
    if specs.empty:
        raise SubmissionError(f"{folder}: no specs.jsonl/specs.parquet: not a sweep folder")
    out = {}
    for key, text in specs[["configuration_id", "spec"]].itertuples(index=False):
        if key in keys:
            out[key] = json.loads(text)
    return [out[k] for k in sorted(out)]


def bundle_from_sweep(sweep_dir: str | Path, out_dir: str | Path, contributor: Contributor,
                      hardware_extra: dict[str, Any] | None = None, notes: str = "",
                      only: set[str] | None = None) -> Path:
    """Write `out_dir` (manifest.yaml, runs/requests[/power_traces].parquet) from the finished specs of
    `sweep_dir` (those in `only`, when given). Raises SubmissionError naming what is missing."""
    folder, out = Path(sweep_dir), Path(out_dir)
    if not folder.is_dir():
        raise SubmissionError(f"{folder}: no such sweep folder")
    if not contributor.consent:
        raise SubmissionError("the bundle needs your consent to publish its rows under CC-BY-4.0 (--consent)")
    tables = load_sweep(folder)
    runs = tables["runs"]
    if only is not None:
        runs = runs[runs["configuration_id"].isin(only)]
    if runs.empty:
        raise SubmissionError(f"{folder}: no finished measurement to bundle")
    keys = set(runs["configuration_id"])
    meter_path = folder / "meter.json"
    meter_info = json.loads(meter_path.read_text()) if meter_path.is_file() else {}
    manifest = {
        "format_version": 1,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "contributor": contributor.manifest(), "license": LICENSE, "consent": True,
        "hardware": hardware_from_rows(runs, meter_info, hardware_extra or {}),
        "software": software_from_rows(runs),
        "schema_versions": {t: load_contract(t).version for t in ("runs", "requests")},
        "specs": _specs(folder, keys),
    }
    if notes:
        manifest["notes"] = notes
    out.mkdir(parents=True, exist_ok=True)
    for table in MEASURED_TABLES:
        frame = runs if table == "runs" else tables[table]
        ids = frame["run_id"].str.rsplit("/", n=1).str[0] if "run_id" in frame else pd.Series(dtype=str)
        frame = frame[ids.isin(keys)] if len(frame) else frame
        if table == "power_traces" and frame.empty:
            (out / "power_traces.parquet").unlink(missing_ok=True)
            continue
        columns = [c for c in load_contract(table).column_names
                   if c in frame.columns and c not in SET_BY_INGESTION.get(table, ())]
        frame[columns].reset_index(drop=True).to_parquet(out / f"{table}.parquet", index=False, engine="pyarrow")
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True),
                                       encoding="utf-8")
    return out
