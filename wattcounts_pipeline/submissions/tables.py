"""Turn a bundle's table files into frames without trusting them: pyarrow for parquet, text-only CSV.

Parquet is read with pyarrow only (no pickle, no pandas metadata, primitive column types only). CSV is read
as text and converted here, at the boundary, so a bad cell becomes a reason naming file, row and field
instead of a silently coerced value; string cells that a spreadsheet would run as a formula are refused.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wattcounts_pipeline.core.contracts import Contract, load_contract
from wattcounts_pipeline.submissions.manifest import FORMULA_PREFIX

SET_BY_INGESTION = {"runs": ("source",)}  # columns the pipeline fills; a bundle may omit them


def show(value: Any) -> str:
    """repr of a cell as its writer meant it (3.5, not np.float64(3.5))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def read_table(table: str, filename: str, data: bytes, max_rows: int, max_bytes: int
               ) -> tuple[pd.DataFrame | None, list[str]]:
    """The table as a frame (None if unreadable) and the reasons found while reading it."""
    contract = load_contract(table)
    if filename.endswith(".parquet"):
        frame, reasons = _read_parquet(filename, data, max_rows, max_bytes)
    else:
        frame, reasons = _read_csv(filename, data, contract, max_rows)
    if frame is None:
        return None, reasons
    reasons += column_reasons(table, frame, contract, filename) + cell_reasons(frame, contract, filename)
    if reasons:
        return None, reasons
    absent = {c.name: None for c in contract.columns if c.nullable and c.name not in frame.columns}
    return frame.assign(**absent), []  # validate_table wants every column, even all-null ones


def _read_parquet(filename: str, data: bytes, max_rows: int, max_bytes: int
                  ) -> tuple[pd.DataFrame | None, list[str]]:
    try:
        handle = pq.ParquetFile(io.BytesIO(data))
        meta = handle.metadata
        if meta.num_rows > max_rows:
            return None, [f"{filename}: {meta.num_rows} rows, more than the {max_rows} allowed"]
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if size > max_bytes:
            return None, [f"{filename}: expands to {size} bytes, more than the {max_bytes} allowed"]
        bad = [f"{f.name} ({f.type})" for f in handle.schema_arrow if not _primitive(f.type)]
        if bad:
            return None, [f"{filename}: unsupported column type(s) {bad}; use strings, integers, floats or booleans"]
        table = handle.read().replace_schema_metadata(None)  # drop pandas metadata: plain columns only
    except (pa.ArrowException, OSError, ValueError, MemoryError) as exc:
        return None, [f"{filename}: not a readable parquet file ({type(exc).__name__}: {exc})"]
    if len(set(table.column_names)) != len(table.column_names):
        return None, [f"{filename}: duplicate column names {table.column_names}"]
    return table.to_pandas(), []


def _primitive(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _primitive(kind.value_type)
    return any(test(kind) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer,
                                       pa.types.is_floating, pa.types.is_boolean, pa.types.is_null))


def _read_csv(filename: str, data: bytes, contract: Contract, max_rows: int) -> tuple[pd.DataFrame | None, list[str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"{filename}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"]
    if "\x00" in text:
        return None, [f"{filename}: holds NUL characters; not a text CSV"]
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                            nrows=max_rows + 1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return None, [f"{filename}: not a readable CSV ({type(exc).__name__}: {exc})"]
    if len(frame) > max_rows:
        return None, [f"{filename}: more than the {max_rows} rows allowed"]
    reasons = []
    for c in contract.columns:
        if c.name not in frame.columns:
            continue
        text_col = frame[c.name]
        empty = text_col == ""
        if c.dtype in ("int64", "float64"):
            numbers = pd.to_numeric(text_col.where(~empty), errors="coerce")
            for row in np.flatnonzero((numbers.isna() & ~empty).to_numpy()):
                reasons.append(f"{filename}: row {row}, field {c.name}: {text_col.iat[row]!r} is not a number")
            frame[c.name] = numbers
        elif c.nullable:
            frame[c.name] = text_col.where(~empty, None)
    return frame, reasons


def column_reasons(table: str, frame: pd.DataFrame, contract: Contract, filename: str) -> list[str]:
    """Missing and unknown columns, named (the Pandera failure names the table, not the column)."""
    expected = set(contract.column_names)
    optional = {c.name for c in contract.columns if c.nullable} | set(SET_BY_INGESTION.get(table, ()))
    missing = sorted(expected - set(frame.columns) - optional)
    unknown = sorted(set(map(str, frame.columns)) - expected)
    return ([f"{filename}: missing column {m!r}" for m in missing]
            + [f"{filename}: unknown column {u!r}" for u in unknown])


def cell_reasons(frame: pd.DataFrame, contract: Contract, filename: str) -> list[str]:
    """Formula-like strings in string columns, and non-integral numbers in integer columns."""
    reasons = []
    for c in contract.columns:
        if c.name not in frame.columns:
            continue
        col = frame[c.name]
        if c.dtype == "string":
            try:
                formula = col.str.match(FORMULA_PREFIX, na=False)
            except AttributeError:  # no string cell at all: nothing a spreadsheet could run
                continue
            for row in np.flatnonzero(formula.to_numpy(dtype=bool)):
                reasons.append(f"{filename}: row {row}, field {c.name}: starts with {col.iat[row].lstrip()[0]!r} "
                               "(spreadsheet formula injection)")
        elif c.dtype == "int64" and pd.api.types.is_float_dtype(col):
            for row in np.flatnonzero((col.notna() & (col % 1 != 0)).to_numpy()):
                reasons.append(f"{filename}: row {row}, field {c.name}: {show(col.iat[row])} is not an integer")
    return reasons
