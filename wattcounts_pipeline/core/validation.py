"""Validate tables against their contracts plus physical plausibility; quarantine, never drop.

Every failing row leaves the valid table for a quarantine table that keeps the row and the reasons
(column, check, value), so nothing is silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandera.errors import SchemaErrors

from wattcounts_pipeline.core.contracts import Contract, load_contract

REL_TOL = 0.01  # derived columns (J/token, tokens/s) must match their inputs within 1%
MIN_WINDOW_S = 0.1  # a window shorter than the NVML counter's update period cannot be trusted
TABLE_LEVEL_CHECKS = ("column_in_dataframe", "column_in_schema")  # these condemn a whole table


@dataclass(frozen=True)
class ValidationResult:
    table: str
    valid: pd.DataFrame
    quarantine: pd.DataFrame  # the failing rows + `row` (position in the input) + `reason`
    failures: pd.DataFrame  # one line per failed check: row, column, check, value

    @property
    def ok(self) -> bool:
        return self.quarantine.empty


def _rel_mismatch(actual: pd.Series, expected: pd.Series) -> pd.Series:
    scale = np.maximum(np.abs(expected), 1e-12)
    return (np.abs(actual - expected) / scale) > REL_TOL


def runs_plausibility(frame: pd.DataFrame) -> list[tuple[pd.Series, str, str]]:
    """Cross-column physics of a run row: (failing mask, column, check name)."""
    f = frame
    rules: list[tuple[pd.Series, str, str]] = [
        (_rel_mismatch(f["energy_per_token_j"], f["energy_j"] / f["output_tokens_total"]),
         "energy_per_token_j", "equals energy_j / output_tokens_total"),
        (_rel_mismatch(f["tokens_per_s"], f["output_tokens_total"] / f["duration_s"]),
         "tokens_per_s", "equals output_tokens_total / duration_s"),
        (_rel_mismatch(f["mean_power_w"], f["energy_j"] / f["duration_s"]),
         "mean_power_w", "equals energy_j / duration_s"),
        (f["energy_net_j"] > f["energy_j"] * (1 + REL_TOL), "energy_net_j", "not above gross energy_j"),
        (f["duration_s"] < MIN_WINDOW_S, "duration_s", f"window at least {MIN_WINDOW_S} s"),
    ]
    nvml = f["energy_method"].isin(["nvml_counter", "nvml_power_integration"])
    rules.append((nvml & (f["gpu_count"] < 1), "gpu_count", "NVML rows use at least one GPU"))
    for col in ("temperature_start_c", "temperature_end_c", "sm_clock_mhz", "gpu_name", "driver_version"):
        rules.append((nvml & f[col].isna(), col, "present for NVML rows"))
    has_limit = nvml & f["gpu_power_limit_w"].notna() & (f["gpu_count"] > 0)
    gpu_power_w = f["gpu_energy_j"] / f["duration_s"]
    ceiling_w = 1.1 * f["gpu_power_limit_w"] * f["gpu_count"]
    rules.append((has_limit & (gpu_power_w > ceiling_w), "gpu_energy_j",
                  "GPU mean power ≤ 1.1 × power limit × GPU count"))
    floor_w = 0.5 * f["idle_power_w"]
    rules.append((nvml & (f["mean_power_w"] < floor_w), "mean_power_w", "at least half the idle power"))
    return rules


def requests_plausibility(frame: pd.DataFrame) -> list[tuple[pd.Series, str, str]]:
    return [(frame["ttft_s"] > frame["e2e_s"] * (1 + REL_TOL), "ttft_s", "not above e2e_s")]


def configurations_plausibility(frame: pd.DataFrame) -> list[tuple[pd.Series, str, str]]:
    """Random weights score nothing, so their quality can only be published or derived for the real model."""
    random_measured = (frame["weights"] == "random") & (frame["quality_source"] == "measured")
    unsourced = frame["quality_acc_mean"].notna() & frame["quality_source"].isna()
    return [(random_measured, "quality_source", "random-weight rows carry no measured quality"),
            (unsourced & (frame["weights"] == "random"), "quality_source", "quality on random weights names its source")]


def quality_plausibility(frame: pd.DataFrame) -> list[tuple[pd.Series, str, str]]:
    """Provenance that says what it is: measured rows name their harness, the others cite and explain."""
    measured = frame["source"] == "measured"
    rules = [(measured & frame["lm_eval_version"].isna(), "lm_eval_version", "present for measured rows"),
             (measured & frame["framework"].isna(), "framework", "present for measured rows"),
             (~measured & frame["citation"].isna(), "citation", "present for published and derived rows"),
             ((frame["source"] == "derived") & frame["recipe"].isna(), "recipe", "present for derived rows")]
    low, high = frame["value_ci95_low"], frame["value_ci95_high"]
    rules.append(((low > frame["value"]) | (high < frame["value"]), "value", "within its 95% interval"))
    return rules


PLAUSIBILITY = {
    "runs": runs_plausibility,
    "requests": requests_plausibility,
    "configurations": configurations_plausibility,
    "quality": quality_plausibility,
}


def validate_table(name: str, frame: pd.DataFrame, source: str = "", contract: Contract | None = None
                   ) -> ValidationResult:
    """Validate `frame` as table `name`; `source` (a file or partition) is named in every reason."""
    contract = contract or load_contract(name)
    frame = frame.reset_index(drop=True)
    for column in contract.columns:  # an omitted nullable (or backfilled) column is filled as conform() fills it
        if column.name not in frame.columns and (column.nullable or column.backfill is not None):
            frame[column.name] = column.backfill
    failures = _schema_failures(contract, frame) + _fractional_integers(contract, frame)
    coerced = _coerce_for_rules(contract, frame)
    if name in PLAUSIBILITY and not coerced.empty:
        for mask, column, check in PLAUSIBILITY[name](coerced):
            for row in np.flatnonzero(mask.fillna(False).to_numpy()):
                value = coerced.at[row, column]
                failures.append({"row": int(row), "column": column, "check": check,
                                 "value": repr(value.item() if hasattr(value, "item") else value)})
    failure_frame = pd.DataFrame(failures, columns=["row", "column", "check", "value"])
    bad_rows = sorted({int(r) for r in failure_frame["row"].dropna()})
    where = f"{source}: " if source else ""
    reasons = (failure_frame.dropna(subset=["row"]).groupby("row")
               .apply(lambda g: "; ".join(f"{where}row {int(g.name)}, field {c}: failed {k} (value {v})"
                                          for c, k, v in zip(g["column"], g["check"], g["value"])),
                      include_groups=False))
    quarantine = frame.iloc[bad_rows].copy()
    quarantine.insert(0, "row", bad_rows)
    quarantine["reason"] = [reasons.get(r, "") for r in bad_rows]
    table_level = failure_frame[failure_frame["row"].isna()]
    if not table_level.empty:  # a missing or unknown column condemns the whole table
        msgs = "; ".join(f"{where}column {c}: {k}" for c, k in zip(table_level["column"], table_level["check"]))
        quarantine = frame.copy()
        quarantine.insert(0, "row", range(len(frame)))
        quarantine["reason"] = msgs
        return ValidationResult(name, contract.empty_frame(), quarantine, failure_frame)
    kept = coerced.drop(index=bad_rows) if bad_rows else coerced  # dropping nothing still copies every column
    valid = contract.conform(kept).reset_index(drop=True)
    return ValidationResult(name, valid, quarantine.reset_index(drop=True), failure_frame)


def _schema_failures(contract: Contract, frame: pd.DataFrame) -> list[dict]:
    """Every Pandera failure at once (lazy), as row/column/check/value dicts (row None: table-level)."""
    try:
        contract.pandera_schema().validate(frame, lazy=True)
        return []
    except SchemaErrors as exc:
        cases = exc.failure_cases
    out = []
    for case in cases.itertuples(index=False):
        index = case.index if pd.notna(case.index) else None
        column = case.column if isinstance(case.column, str) else str(case.check)
        if index is None:
            if str(case.check) not in TABLE_LEVEL_CHECKS:
                continue  # a check that crashed on uncoercible cells, already reported row by row
            column = str(case.failure_case)  # a missing or unknown column: name it, not the table
        out.append({"row": None if index is None else int(index), "column": column,
                    "check": str(case.check), "value": repr(case.failure_case)})
    return out


def _fractional_integers(contract: Contract, frame: pd.DataFrame) -> list[dict]:
    """Integer columns holding 2.5: Pandera's coercion would silently truncate them, so catch them raw."""
    out = []
    for c in contract.columns:
        if c.dtype == "int64" and c.name in frame.columns:
            numeric = pd.to_numeric(frame[c.name], errors="coerce")
            for row in np.flatnonzero((numeric.notna() & (numeric != numeric.round())).to_numpy()):
                out.append({"row": int(row), "column": c.name, "check": "whole_number",
                            "value": repr(numeric.iloc[row].item())})
    return out


def _coerce_for_rules(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """Best-effort typed copy for cross-column rules; uncoercible cells become NaN (already reported)."""
    out = pd.DataFrame(index=frame.index)
    for c in contract.columns:
        if c.name not in frame.columns:
            return pd.DataFrame()
        if c.dtype in ("int64", "float64"):
            out[c.name] = pd.to_numeric(frame[c.name], errors="coerce")
        else:
            out[c.name] = frame[c.name]
    return out

