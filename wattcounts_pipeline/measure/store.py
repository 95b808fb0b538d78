"""How a sweep folder (`data/measurements/<sweep>/`) stores its rows, and how they are read back.

While a sweep runs, each finished spec is appended to `runs.jsonl`, `requests.jsonl`, `power_traces.jsonl`
and `specs.jsonl` line by line (crash-safe: a killed sweep loses at most a cut last line). A finished folder
is then packed (`wattcounts pack DIR`; the GPU call scripts do it at the end of a call): each table becomes
`<table>.parquet` (zstd level 19, dictionary-encoded strings, rows in their recorded order), written beside the
JSONL, read back and compared value for value (column order, dtypes, float bits, None vs NaN), and only then
the JSONL is removed. Lossless: nothing is thinned or rounded.

Readers take both forms: the parquet where present plus any JSONL (a sweep in progress, or one resumed after
packing, whose new rows are appended after the packed ones). Each folder is read and indexed by configuration id
once per process, again only when one of its files changes (cache keyed on path, mtime and size).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.atomic import atomic_file
from wattcounts_pipeline.core.errors import RecordedDataError
from wattcounts_pipeline.core.hardware import first_machine, hardware_suffix
from wattcounts_pipeline.core.vocab import MEASURED_TABLES

logger = logging.getLogger(__name__)
TABLES = MEASURED_TABLES  # what the `measurements` asset serves
PACKED = (*TABLES, "specs")  # what `pack_sweep` converts (failures.jsonl and logs stay as they are)
ZSTD_LEVEL = 19
_NO_ROWS = np.empty(0, dtype=np.intp)

Stamp = tuple[tuple[str, int, int], ...]


def _stamp(folder: Path, names: tuple[str, ...]) -> tuple[str, Stamp]:
    """`folder` and (file name, mtime_ns, size) of each stored file of `names`: the cache key of a read."""
    files = []
    for name in names:
        for suffix in (".parquet", ".jsonl"):
            path = folder / f"{name}{suffix}"
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            files.append((path.name, st.st_mtime_ns, st.st_size))
    return str(folder), tuple(files)


def _jsonl_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill mid-write
    return rows


def _pyarrow_parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise RecordedDataError(f"{path}: reading or packing a packed sweep folder needs pyarrow "
                                f"(a dependency of wattcounts; `pip install pyarrow`)") from exc
    return pq


def _read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    pq = _pyarrow_parquet(path)
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except Exception as exc:
        raise RecordedDataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc}); "
                                f"restore it from git or re-pack the sweep from its JSONL") from exc


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """Every stored row of table `name` in `folder` (packed rows first, then any JSONL rows), unfiltered.
    Packed and JSONL rows together are typed as if all were one JSONL file (a column null in the new rows
    stays float, not object), so packing them again reads back identical."""
    packed = folder / f"{name}.parquet"
    frame = _read_parquet(packed) if packed.exists() else None
    jsonl = folder / f"{name}.jsonl"
    rows = _jsonl_rows(jsonl) if jsonl.exists() else []
    if frame is None or frame.empty:
        return pd.DataFrame(rows)
    if not rows:
        return frame
    return pd.DataFrame(frame.to_dict(orient="records") + rows)


@functools.lru_cache(maxsize=256)
def _machines(folder: str, stamp: Stamp) -> dict[str, str]:
    """Configuration id -> `hardware_id` of every spec measured in `folder` (runs.parquet and runs.jsonl)."""
    path = Path(folder)
    machines: dict[str, str] = {}
    if (path / "runs.parquet").exists():
        frame = _read_parquet(path / "runs.parquet")
        hardware = frame["hardware_id"] if "hardware_id" in frame else pd.Series("", index=frame.index)
        machines.update((k, str(h)) for k, h in zip(frame["configuration_id"], hardware) if isinstance(k, str))
    if (path / "runs.jsonl").exists():
        for line in (path / "runs.jsonl").read_text().splitlines():
            try:
                row = json.loads(line)
                machines.setdefault(row["configuration_id"], str(row.get("hardware_id", "")))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by a kill mid-write
    return machines


def done_keys(out: Path) -> set[str]:
    """Configuration ids already measured (present in runs.parquet or runs.jsonl)."""
    return set(_machines(*_stamp(out, ("runs",))))


def _configuration_ids(frame: pd.DataFrame) -> pd.Series:
    """Each row's configuration id (power traces only carry run ids: '<configuration id>/r<n>')."""
    if "configuration_id" in frame:
        return frame["configuration_id"]
    return frame["run_id"].str.rsplit("/", n=1).str[0]


@dataclass(frozen=True)
class _Index:
    tables: dict[str, pd.DataFrame]  # complete specs only; never handed out without a copy
    rows: dict[str, dict[str, np.ndarray]]  # table -> configuration id -> row positions


@functools.lru_cache(maxsize=16)
def _index(folder: str, stamp: Stamp) -> _Index:
    path = Path(folder)
    done = set(_machines(*_stamp(path, ("runs",))))
    tables, rows = {}, {}
    for name in TABLES:
        frame = read_table(path, name)
        positions: dict[str, np.ndarray] = {}
        if not frame.empty:
            frame = frame[_configuration_ids(frame).isin(done)].reset_index(drop=True)
            ids = _configuration_ids(frame)
            positions = {str(k): np.asarray(v, dtype=np.intp) for k, v in ids.groupby(ids, sort=False).indices.items()}
        tables[name], rows[name] = frame, positions
    return _Index(tables, rows)


def load_sweep(folder: Path) -> dict[str, pd.DataFrame]:
    """The tables of a sweep folder, keeping only complete specs (those with a runs row)."""
    index = _index(*_stamp(folder, TABLES))
    return {name: frame.copy() for name, frame in index.tables.items()}


def find_recorded(key: str, folders: list[Path]) -> tuple[list[Path], dict[str, pd.DataFrame]] | None:
    """The rows of configuration `key`: for each machine (`hardware_id`) those of the first folder that
    holds the key on it. A later folder of the same machine is a repeat call (read for repeatability, not
    served); another machine's rows are a configuration of their own, which `aggregate.configuration_keys`
    names apart: their run ids get the same hardware suffix here (all but the machine measured first, which
    keeps its ids), so each run id stays unique."""
    served: dict[str, tuple[Path, dict[str, pd.DataFrame]]] = {}
    for folder in folders:
        machine = _machines(*_stamp(folder, ("runs",))).get(key)
        if machine is None or machine in served:
            continue
        index = _index(*_stamp(folder, TABLES))
        served[machine] = folder, {name: frame.copy() if frame.empty else
                                   frame.take(index.rows[name].get(key, _NO_ROWS)).reset_index(drop=True)
                                   for name, frame in index.tables.items()}
    if not served:
        return None
    if len(served) == 1:
        folder, picked = next(iter(served.values()))
        return [folder], picked
    keeps = first_machine({machine: str(picked["runs"]["started_at"].fillna("").min()) if "started_at" in picked["runs"]
                           else "" for machine, (_, picked) in served.items()})
    for machine, (_, picked) in served.items():
        if machine == keeps:
            continue
        relabelled = f"{key}-{hardware_suffix(machine)}/"
        for frame in picked.values():
            if "run_id" in frame:
                frame["run_id"] = frame["run_id"].str.replace(f"{key}/", relabelled, n=1, regex=False)
    tables = {name: pd.concat([picked[name] for _, picked in served.values()], ignore_index=True)
              for name in TABLES}
    return [folder for folder, _ in served.values()], tables


def _cells(series: pd.Series) -> object:
    """A column's exact content: raw bytes for numbers (float bits, NaN payloads), type + repr otherwise."""
    if series.dtype.kind in "biufcmM":
        return series.dtype.str, np.ascontiguousarray(series.to_numpy()).tobytes()
    return [(type(v).__name__, repr(v)) for v in series.tolist()]


def same_frame(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    """None when `a` and `b` are identical (columns and order, dtypes, every value); else the first difference."""
    if list(a.columns) != list(b.columns):
        return f"columns {list(a.columns)} != {list(b.columns)}"
    if len(a) != len(b):
        return f"{len(a)} rows != {len(b)}"
    for col in a.columns:
        if str(a[col].dtype) != str(b[col].dtype):
            return f"column {col!r}: dtype {a[col].dtype} != {b[col].dtype}"
        if _cells(a[col]) != _cells(b[col]):
            return f"column {col!r}: values differ"
    return None


def pack_sweep(folder: Path, level: int = ZSTD_LEVEL) -> dict[str, dict[str, int]]:
    """Convert a finished sweep folder's JSONL tables to parquet and remove each JSONL once its parquet reads
    back identical. Rows already packed are kept (a resumed sweep's new JSONL rows are appended to them).
    Do not run while a sweep still writes to `folder`. Returns {table: {"rows", "jsonl_bytes", "parquet_bytes"}}."""
    folder = Path(folder)
    pq = _pyarrow_parquet(folder)
    import pyarrow as pa

    report: dict[str, dict[str, int]] = {}
    for name in PACKED:
        jsonl, target = folder / f"{name}.jsonl", folder / f"{name}.parquet"
        if not jsonl.exists():
            continue
        frame = read_table(folder, name)
        jsonl_bytes = jsonl.stat().st_size
        with atomic_file(target) as tmp:  # an error below leaves the JSONL and no parquet
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table, tmp, compression="zstd", compression_level=level, use_dictionary=True)
            problem = same_frame(frame, _read_parquet(tmp))
            if problem is not None:
                raise RecordedDataError(f"{jsonl}: packed parquet does not read back equal ({problem}); JSONL kept")
        jsonl.unlink()
        report[name] = {"rows": len(frame), "jsonl_bytes": jsonl_bytes, "parquet_bytes": target.stat().st_size}
        logger.info("packed %s: %d rows, %d -> %d bytes", jsonl, len(frame), jsonl_bytes, target.stat().st_size)
    return report
