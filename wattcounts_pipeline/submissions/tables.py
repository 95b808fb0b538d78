"""Turn a bundle's table files into frames without trusting them: bounded pyarrow reads, nothing decoded blind.

Parquet is read with pyarrow only (no pickle, no pandas metadata, primitive column types only), row group by
row group, with string columns kept dictionary-encoded until their decoded size and longest cell are known:
a 12 KB file whose dictionary holds one long string repeated a million times is refused from its lengths,
never expanded. CSV is streamed in 1 MB blocks as text and converted here, at the boundary, so a bad cell
becomes a reason naming file, row and field instead of a silently coerced value; string cells that a
spreadsheet would run as a formula, or that hold control or bidi characters, are refused.
"""

from __future__ import annotations

import codecs
import csv
import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from wattcounts_pipeline.core.contracts import Contract, load_contract
from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, Limits
from wattcounts_pipeline.submissions.manifest import FORMULA_PREFIX, UNSAFE_CHARS

SET_BY_INGESTION = {"runs": ("source",)}  # columns the pipeline fills; a bundle may omit them
EXTRA_COLUMNS = 8  # unknown columns tolerated long enough to be named in a reason
MAX_ROW_GROUPS = 10_000
CSV_BLOCK_BYTES = 1 << 20


def show(value: Any) -> str:
    """repr of a cell as its writer meant it (3.5, not np.float64(3.5)), cut short: a reason is not a copy."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_table(table: str, filename: str, data: bytes, limits: Limits = DEFAULT_LIMITS
               ) -> tuple[pd.DataFrame | None, list[str]]:
    """The table as a frame (None if unreadable) and the reasons found while reading it."""
    contract = load_contract(table)
    max_columns = len(contract.columns) + EXTRA_COLUMNS
    if filename.endswith(".parquet"):
        arrow, reasons = _read_parquet(filename, data, max_columns, limits)
    else:
        arrow, reasons = _read_csv(filename, data, max_columns, limits)
    if arrow is None:
        return None, reasons
    names = arrow.column_names
    if len(set(names)) != len(names):
        return None, [f"{filename}: duplicate column names {sorted({n for n in names if names.count(n) > 1})}"]
    frame = arrow.to_pandas()  # deduplicates equal strings into one Python object each
    if not filename.endswith(".parquet"):
        frame, reasons = _convert_csv(filename, frame, contract)
    reasons += column_reasons(table, frame, contract, filename) + cell_reasons(frame, contract, filename)
    if reasons:
        return None, reasons
    absent = {c.name: None for c in contract.columns if c.nullable and c.name not in frame.columns}
    return frame.assign(**absent), []  # validate_table wants every column, even all-null ones


def _read_parquet(filename: str, data: bytes, max_columns: int, limits: Limits) -> tuple[pa.Table | None, list[str]]:
    """Footer checks, then one row group at a time with strings measured before they are decoded."""
    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        if meta.num_rows > limits.max_rows:
            return None, [f"{filename}: {meta.num_rows} rows, more than the {limits.max_rows} allowed"]
        if meta.num_columns > max_columns:
            return None, [f"{filename}: {meta.num_columns} columns, more than the {max_columns} allowed"]
        if meta.num_rows * meta.num_columns > limits.max_cells:
            return None, [(f"{filename}: {meta.num_rows} rows x {meta.num_columns} columns, more than the "
                          f"{limits.max_cells} cells allowed")]
        if meta.num_row_groups > MAX_ROW_GROUPS:
            return None, [f"{filename}: {meta.num_row_groups} row groups, more than the {MAX_ROW_GROUPS} allowed"]
        encoded = sum(meta.row_group(g).column(c).total_uncompressed_size
                      for g in range(meta.num_row_groups) for c in range(meta.num_columns))
        if encoded > limits.max_decoded_bytes:
            return None, [(f"{filename}: {encoded} bytes once decompressed, more than the {limits.max_decoded_bytes} "
                          "allowed")]
        schema = pq.ParquetFile(io.BytesIO(data)).schema_arrow
        bad = [f"{f.name} ({f.type})" for f in schema if not _primitive(f.type)]
        if bad:
            return None, [f"{filename}: unsupported column type(s) {bad}; use strings, integers, floats or booleans"]
        strings = [f.name for f in schema if _is_text(f.type)]
        handle = pq.ParquetFile(io.BytesIO(data), read_dictionary=strings)  # keep dictionaries encoded
        parts, decoded, row0 = [], 0, 0
        for g in range(meta.num_row_groups):
            part = handle.read_row_group(g).replace_schema_metadata(None)  # drop pandas metadata
            if part.num_rows != meta.row_group(g).num_rows:
                return None, [(f"{filename}: row group {g} holds {part.num_rows} rows, its footer says "
                              f"{meta.row_group(g).num_rows}")]
            for name in strings:
                size, reasons = _string_cost(filename, name, part.column(name), row0, limits)
                decoded += size
                if reasons:
                    return None, reasons
                if decoded > limits.max_decoded_bytes:
                    return None, [(f"{filename}: column {name}: strings decode to more than the "
                                  f"{limits.max_decoded_bytes} bytes allowed")]
            parts.append(part.cast(pa.schema([f.with_type(_plain(f.type)) for f in part.schema])))
            row0 += part.num_rows
        return (pa.concat_tables(parts) if parts else schema.empty_table()), []
    except (pa.ArrowException, OSError, ValueError, MemoryError, IndexError) as exc:
        return None, [f"{filename}: not a readable parquet file ({type(exc).__name__}: {exc})"]


def _string_cost(filename: str, name: str, column: pa.ChunkedArray, row0: int, limits: Limits
                 ) -> tuple[int, list[str]]:
    """Decoded bytes of a string column and a reason for its first over-long cell, from lengths alone."""
    total, offset = 0, row0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            values, indices = chunk.dictionary, chunk.indices
            if len(values) > max(len(chunk), 1):
                return 0, [f"{filename}: column {name}: dictionary of {len(values)} entries for {len(chunk)} rows"]
            lengths = pc.take(pc.binary_length(values), indices)  # one int per row, strings untouched
            chars = pc.take(pc.utf8_length(values), indices) if pa.types.is_string(values.type) else lengths
        else:
            lengths = pc.binary_length(chunk)
            chars = pc.utf8_length(chunk) if pa.types.is_string(chunk.type) else lengths
        total += pc.sum(lengths).as_py() or 0
        longest = pc.max(chars).as_py() or 0
        if longest > limits.max_string_chars:
            row = offset + pc.index(chars, longest).as_py()
            return total, [(f"{filename}: row {row}, field {name}: {longest} characters, more than the "
                           f"{limits.max_string_chars} allowed")]
        offset += len(chunk)
    return total, []


def _is_text(kind: pa.DataType) -> bool:
    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _plain(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _primitive(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _primitive(kind.value_type)
    return any(test(kind) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer,
                                       pa.types.is_floating, pa.types.is_boolean, pa.types.is_null))


def _read_csv(filename: str, data: bytes, max_columns: int, limits: Limits) -> tuple[pa.Table | None, list[str]]:
    """Every cell as text, streamed block by block so the row, cell and length limits stop it early."""
    if b"\x00" in data:
        return None, [f"{filename}: holds NUL characters; not a text CSV"]
    decoder = codecs.getincrementaldecoder("utf-8")()
    for start in range(0, len(data), CSV_BLOCK_BYTES):
        try:
            decoder.decode(data[start:start + CSV_BLOCK_BYTES], final=start + CSV_BLOCK_BYTES >= len(data))
        except UnicodeDecodeError as exc:
            at = start + exc.start
            return None, [f"{filename}: not UTF-8 text (byte {data[at]:#04x} at offset {at})"]
    end = data.find(b"\n", 0, CSV_BLOCK_BYTES)
    if end < 0 and len(data) > CSV_BLOCK_BYTES:
        return None, [f"{filename}: header row longer than {CSV_BLOCK_BYTES} bytes"]
    first = data[: end if end >= 0 else len(data)].decode("utf-8").rstrip("\r")
    header = next(csv.reader([first]), [])
    if not header or header == [""]:
        return None, [f"{filename}: not a readable CSV (no header row)"]
    if len(header) > max_columns:
        return None, [f"{filename}: {len(header)} columns, more than the {max_columns} allowed"]
    if len(set(header)) != len(header):
        return None, [f"{filename}: duplicate column names {sorted({n for n in header if header.count(n) > 1})}"]
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in header}, null_values=[],
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    batches, rows = [], 0
    try:
        reader = pacsv.open_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES,
                                                                                  use_threads=False),
                                parse_options=pacsv.ParseOptions(newlines_in_values=True), convert_options=convert)
        for batch in reader:
            if rows + batch.num_rows > limits.max_rows:
                return None, [f"{filename}: more than the {limits.max_rows} rows allowed"]
            if (rows + batch.num_rows) * len(header) > limits.max_cells:
                return None, [f"{filename}: more than the {limits.max_cells} cells allowed"]
            for name in batch.schema.names:
                _, reasons = _string_cost(filename, name, pa.chunked_array([batch.column(name)]), rows, limits)
                if reasons:
                    return None, reasons
            batches.append(batch)
            rows += batch.num_rows
        return pa.Table.from_batches(batches, schema=reader.schema), []
    except (pa.ArrowException, ValueError) as exc:
        return None, [f"{filename}: not a readable CSV ({type(exc).__name__}: {exc})"]


def _convert_csv(filename: str, frame: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, list[str]]:
    """Text cells to the contract's types; an empty cell is null (numeric, nullable string) or ''."""
    reasons = []
    for c in contract.columns:
        if c.name not in frame.columns:
            continue
        text_col = frame[c.name]
        empty = text_col == ""
        if c.dtype in ("int64", "float64"):
            numbers = pd.to_numeric(text_col.where(~empty), errors="coerce")
            for row in np.flatnonzero((numbers.isna() & ~empty).to_numpy()):
                reasons.append(f"{filename}: row {row}, field {c.name}: {show(text_col.iat[row])} is not a number")
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
    """Formula-like strings and control or bidi characters in string columns; non-integral numbers in integer
    columns; ±inf or NaN in numeric columns (NaN is a null only where the column is nullable)."""
    reasons = []
    for c in contract.columns:
        if c.name not in frame.columns:
            continue
        col = frame[c.name]
        if c.dtype == "string":
            try:
                formula = col.str.match(FORMULA_PREFIX, na=False)
                unsafe = col.str.contains(UNSAFE_CHARS, na=False)
            except AttributeError:  # no string cell at all: nothing a spreadsheet or terminal could run
                continue
            for row in np.flatnonzero(formula.to_numpy(dtype=bool)):
                reasons.append(f"{filename}: row {row}, field {c.name}: starts with {col.iat[row].lstrip()[0]!r} "
                               "(spreadsheet formula injection)")
            for row in np.flatnonzero(unsafe.to_numpy(dtype=bool)):
                char = UNSAFE_CHARS.search(col.iat[row]).group()  # type: ignore[union-attr]
                reasons.append(f"{filename}: row {row}, field {c.name}: holds control or bidi character "
                               f"U+{ord(char):04X}")
            continue
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue  # a wrong type is Pandera's to report
        values = col.to_numpy(dtype=float, na_value=np.nan)
        for row in np.flatnonzero(np.isinf(values)):
            reasons.append(f"{filename}: row {row}, field {c.name}: {show(col.iat[row])} is not a finite number")
        if c.dtype == "int64" and pd.api.types.is_float_dtype(col):
            for row in np.flatnonzero(np.isfinite(values) & (values % 1 != 0)):
                reasons.append(f"{filename}: row {row}, field {c.name}: {show(col.iat[row])} is not an integer")
    return reasons
