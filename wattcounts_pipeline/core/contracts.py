"""Table contracts from `schemas/*.yaml`: the one source for Pandera schemas, card docs and HF features."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import yaml

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import ContractError

HF_DTYPES = {"string": "string", "int64": "int64", "float64": "float64", "bool": "bool"}
PA_DTYPES = {"string": "string", "int64": "int64", "float64": "float64", "bool": "bool"}


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    description: str
    unit: str = ""
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    allowed: tuple[str, ...] = ()
    regex: str = ""
    backfill: str | None = None  # the value of rows written before the column existed (old releases)

    @property
    def pandas_dtype(self) -> str:
        """Nullable integers need pandas' "Int64" (numpy int64 has no missing value)."""
        return "Int64" if self.dtype == "int64" and self.nullable else PA_DTYPES[self.dtype]

    def checks(self) -> list[pa.Check]:
        checks: list[pa.Check] = []
        if self.min is not None:
            checks.append(pa.Check.gt(self.min) if self.min_exclusive else pa.Check.ge(self.min))
        if self.max is not None:
            checks.append(pa.Check.le(self.max))
        if self.allowed:
            checks.append(pa.Check.isin(list(self.allowed)))
        if self.regex:
            checks.append(pa.Check.str_matches(self.regex))
        return checks

    def range_text(self) -> str:
        if self.allowed:
            return " / ".join(self.allowed)
        lo = "" if self.min is None else (f"> {self.min:g}" if self.min_exclusive else f"≥ {self.min:g}")
        hi = "" if self.max is None else f"≤ {self.max:g}"
        return ", ".join(x for x in (lo, hi) if x)


@dataclass(frozen=True)
class Contract:
    name: str
    version: int
    description: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def pandera_schema(self) -> pa.DataFrameSchema:
        """Strict, coercing schema: unknown columns fail, types are converted at the boundary."""
        return pa.DataFrameSchema(
            {c.name: pa.Column(c.pandas_dtype, checks=c.checks(), nullable=c.nullable,
                               description=c.description, title=c.name) for c in self.columns},
            strict=True, coerce=True, ordered=False, name=self.name,
            unique=list(self.primary_key) or None, report_duplicates="exclude_first",
        )

    def hf_features(self) -> dict[str, dict[str, str]]:
        """`dataset_info.features` entries for the dataset card."""
        return {c.name: {"dtype": HF_DTYPES[c.dtype]} for c in self.columns}

    def markdown_table(self) -> str:
        """Column documentation for the dataset card."""
        lines = ["| column | type | unit | range / values | nullable | description |",
                 "|---|---|---|---|---|---|"]
        for c in self.columns:
            lines.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {c.range_text()} | "
                         f"{'yes' if c.nullable else 'no'} | {c.description} |")
        return "\n".join(lines)

    def empty_frame(self) -> pd.DataFrame:
        return pd.DataFrame({c.name: pd.Series(dtype=c.pandas_dtype) for c in self.columns})

    def conform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns in contract order with contract dtypes (missing nullable columns added as null, missing columns
        with a `backfill` as that value: rows written before the column existed)."""
        added = {c.name: c.backfill for c in self.columns
                 if c.name not in frame.columns and (c.nullable or c.backfill is not None)}
        out = frame.assign(**added) if added else frame  # the selection below is a new frame: no copy first
        missing = [c for c in self.column_names if c not in out.columns]
        if missing:
            raise ContractError(f"table {self.name!r}: missing columns {missing}")
        out = out[self.column_names]
        return out.astype({c.name: c.pandas_dtype for c in self.columns})


def parse_contract(doc: dict[str, Any], source: str) -> Contract:
    """Build a Contract from a parsed YAML document, naming `source` and the column in errors."""
    try:
        columns = []
        for i, col in enumerate(doc["columns"]):
            if col.get("dtype") not in PA_DTYPES:
                raise ContractError(f"{source}: columns[{i}] ({col.get('name')}): unknown dtype {col.get('dtype')!r}")
            columns.append(Column(**{**col, "allowed": tuple(col.get("allowed", ()))}))
        return Contract(name=doc["name"], version=int(doc["version"]), description=doc.get("description", ""),
                        primary_key=tuple(doc.get("primary_key", ())), columns=tuple(columns))
    except (KeyError, TypeError) as exc:
        raise ContractError(f"{source}: malformed contract: {exc}") from exc


@functools.cache
def load_contract(name: str, schemas_dir: Path | None = None) -> Contract:
    """The contract `schemas/<name>.yaml`."""
    path = (schemas_dir or paths.SCHEMAS_DIR) / f"{name}.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContractError(f"{path}: no contract for table {name!r}") from None
    return parse_contract(doc, str(path))


TABLES = ("runs", "requests", "quality", "configurations", "power_traces", "submissions")
