"""Validate tables against their contracts plus physical plausibility; quarantine, never drop.

Every failing row leaves the valid table for a quarantine table that keeps the row and the reasons
(column, check, value), so nothing is silently lost.
"""

from __future__ import annotations

from collections.abc import Mapping
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
             (measured & frame["recipe"].notna(), "recipe", "absent for measured rows (a recipe means derived)"),
             (~measured & frame["citation"].isna(), "citation", "present for published and derived rows"),
             ((frame["source"] == "derived") & frame["recipe"].isna(), "recipe", "present for derived rows")]
    low, high = frame["value_ci95_low"], frame["value_ci95_high"]
    rules.append(((low > frame["value"]) | (high < frame["value"]), "value", "within its 95% interval"))
    return rules


def load_points_plausibility(frame: pd.DataFrame) -> list[tuple[pd.Series, str, str]]:
    """A serving load point's derived columns agree with its counts, and its percentiles are ordered."""
    f = frame
    rules = [
        (_rel_mismatch(f["energy_per_request_j"], f["energy_j"] / f["requests_completed"]),
         "energy_per_request_j", "equals energy_j / requests_completed"),
        (_rel_mismatch(f["energy_per_output_token_j"], f["energy_j"] / f["output_tokens_total"]),
         "energy_per_output_token_j", "equals energy_j / output_tokens_total"),
        (_rel_mismatch(f["achieved_rate_per_s"], f["requests_completed"] / f["duration_s"]),
         "achieved_rate_per_s", "equals requests_completed / duration_s"),
        (_rel_mismatch(f["mean_power_w"], f["energy_j"] / f["duration_s"]), "mean_power_w",
         "equals energy_j / duration_s"),
        (f["requests_completed"] + f["requests_failed"] > f["requests_offered"], "requests_completed",
         "completed + failed not above offered"),
        (f["goodput_per_s"] > f["achieved_rate_per_s"] * (1 + REL_TOL), "goodput_per_s", "not above achieved rate"),
        ((f["load_mode"] == "closed") != f["users"].notna(), "users", "present exactly in closed loop"),
        ((f["load_mode"] == "open") != f["offered_rate_per_s"].notna(), "offered_rate_per_s",
         "present exactly in open loop"),
    ]
    for metric in ("ttft", "tpot", "e2e"):
        p50, p90, p99 = (f[f"{metric}_p{q}_s"] for q in (50, 90, 99))
        rules.append((((p50 > p90) | (p90 > p99)).fillna(False), f"{metric}_p90_s", "p50 <= p90 <= p99"))
    return rules


PLAUSIBILITY = {
    "load_points": load_points_plausibility,
    "runs": runs_plausibility,
    "requests": requests_plausibility,
    "configurations": configurations_plausibility,
    "quality": quality_plausibility,
}


def validate_table(name: str, frame: pd.DataFrame, source: str = "", contract: Contract | None = None
                   ) -> ValidationResult:
    """Validate `frame` as table `name`; `source` (a file or partition) is named in every reason."""
    contract = contract or load_contract(name)
    frame, coerced, failures = _check(name, contract, frame)
    condemned = _condemned(name, contract, frame, failures, source)
    if condemned is not None:
        return condemned
    bad_rows = _bad_rows(failures)
    kept = coerced.drop(index=bad_rows) if bad_rows else coerced  # dropping nothing still copies every column
    valid = contract.conform(kept).reset_index(drop=True)
    return ValidationResult(name, valid, _quarantine(frame, failures, bad_rows, source), failures)


def validate_partitions(name: str, frames: Mapping[str, pd.DataFrame], sources: Mapping[str, str] | None = None
                        ) -> dict[str, ValidationResult]:
    """`validate_table` of each partition's frame, the same results, in one Pandera pass per column layout.

    Why: a pass costs tens of milliseconds however few rows it has, so a backfill run of 10,000 recorded
    partitions spent most of its time in per-partition set-up. Frames with the same columns are checked as one
    table; failures, reasons (row numbers and `sources[key]`) and valid rows are then split back per partition.
    A duplicate primary key across partitions is caught here too (the later row is quarantined)."""
    contract = load_contract(name)
    sources = sources or {}
    out: dict[str, ValidationResult] = {}
    layouts: dict[tuple[str, ...], list[str]] = {}
    for key, frame in frames.items():
        if frame.empty:
            out[key] = validate_table(name, frame, sources.get(key, ""), contract)
        else:
            layouts.setdefault(tuple(map(str, frame.columns)), []).append(key)
    for keys in layouts.values():
        lengths = np.array([len(frames[k]) for k in keys])
        starts = np.concatenate([[0], np.cumsum(lengths)])
        whole, coerced, failures = _check(name, contract, pd.concat([frames[k] for k in keys], ignore_index=True))
        bad_rows = _bad_rows(failures)
        rows = failures["row"]
        table_level = rows.isna()
        if not table_level.any():
            kept = coerced.drop(index=bad_rows) if bad_rows else coerced
            valid = contract.conform(kept).reset_index(drop=True)
            part_of_kept = np.delete(np.repeat(np.arange(len(keys)), lengths), bad_rows)
            valid_starts = np.concatenate([[0], np.cumsum(np.bincount(part_of_kept, minlength=len(keys)))])
        for i, key in enumerate(keys):
            lo, hi = int(starts[i]), int(starts[i + 1])
            frame = whole.iloc[lo:hi].reset_index(drop=True)
            mine = failures[table_level | ((rows >= lo) & (rows < hi))].reset_index(drop=True)
            located = mine["row"].notna()
            mine.loc[located, "row"] = mine.loc[located, "row"] - lo
            source = sources.get(key, "")
            condemned = _condemned(name, contract, frame, mine, source)
            if condemned is not None:
                out[key] = condemned
                continue
            part = valid.iloc[int(valid_starts[i]):int(valid_starts[i + 1])].reset_index(drop=True)
            out[key] = ValidationResult(name, part, _quarantine(frame, mine, _bad_rows(mine), source), mine)
    return {key: out[key] for key in frames}


def _check(name: str, contract: Contract, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The frame as checked (fresh index, omitted nullable columns filled), its typed copy for the rules,
    and one line per failed check (row None: the whole table)."""
    frame = frame.reset_index(drop=True)
    for column in contract.columns:  # an omitted nullable (or backfilled) column is filled as conform() fills it
        if column.name not in frame.columns and (column.nullable or column.backfill is not None):
            frame[column.name] = column.backfill
    failures = _schema_failures(contract, frame) + _fractional_integers(contract, frame)
    coerced = _coerce_for_rules(contract, frame)
    if name in PLAUSIBILITY and not coerced.empty:
        for mask, column_name, check in PLAUSIBILITY[name](coerced):
            for row in np.flatnonzero(mask.fillna(False).to_numpy()):
                value = coerced.at[row, column_name]
                failures.append({"row": int(row), "column": column_name, "check": check,
                                 "value": repr(value.item() if hasattr(value, "item") else value)})
    return frame, coerced, pd.DataFrame(failures, columns=["row", "column", "check", "value"])


def _bad_rows(failures: pd.DataFrame) -> list[int]:
    return sorted({int(r) for r in failures["row"].dropna()})


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def _quarantine(frame: pd.DataFrame, failures: pd.DataFrame, bad_rows: list[int], source: str) -> pd.DataFrame:
    """The failing rows, each with its position in the input and every reason it failed."""
    where = _where(source)
    reasons = (failures.dropna(subset=["row"]).groupby("row")
               .apply(lambda g: "; ".join(f"{where}row {int(g.name)}, field {c}: failed {k} (value {v})"
                                          for c, k, v in zip(g["column"], g["check"], g["value"])),
                      include_groups=False)) if bad_rows else {}
    quarantine = frame.iloc[bad_rows].copy()
    quarantine.insert(0, "row", bad_rows)
    quarantine["reason"] = [reasons.get(r, "") for r in bad_rows]
    return quarantine.reset_index(drop=True)


def _condemned(name: str, contract: Contract, frame: pd.DataFrame, failures: pd.DataFrame, source: str
               ) -> ValidationResult | None:
    """The result when a missing or unknown column condemns the whole table, else None."""
    table_level = failures[failures["row"].isna()]
    if table_level.empty:
        return None
    where = _where(source)
    msgs = "; ".join(f"{where}column {c}: {k}" for c, k in zip(table_level["column"], table_level["check"]))
    quarantine = frame.copy()
    quarantine.insert(0, "row", range(len(frame)))
    quarantine["reason"] = msgs
    return ValidationResult(name, contract.empty_frame(), quarantine, failures)


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

