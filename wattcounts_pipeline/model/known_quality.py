"""The quality each measured setup is known to have, with where it came from, for the recommendation.

A release's configurations carry quality from three sources (quality/derive.py): measured here on real weights,
published by the model's authors (bf16), or derived (published bf16 × the format's published retention). Random-
weight GPU rows have no measured quality, so without this table no GPU candidate could be held to a minimum
quality. The predictor's own quality model is a fourth source, `predicted`, for setups none of the three covers.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from wattcounts_pipeline.core.vocab import RECOMMEND_QUALITY_SOURCES as QUALITY_SOURCES  # most trusted first

KEY = ["architecture", "quantization", "framework"]
COLUMNS = [*KEY, "quality_acc_mean", "quality_acc_mean_low", "quality_acc_mean_high", "quality_source",
           "quality_tasks"]


def known_quality(rows: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    """One row per (architecture, quantization, framework) with a quality in the training rows: the most trusted
    source's values (averaged over its rows: they differ only in workload, batch or device) and its 95% bounds.
    `feats` are the rows' features (same index), so keys match the recommendation's candidates."""
    if "quality_acc_mean" not in rows:
        return from_records([])
    def column(name: str, default: object) -> pd.Series:
        return rows[name] if name in rows else pd.Series(default, index=rows.index)

    value = pd.to_numeric(rows["quality_acc_mean"], errors="coerce")
    table = pd.DataFrame({
        "architecture": feats["arch_key"], "quantization": feats["quant_key"], "framework": feats["framework"],
        "quality_acc_mean": value,
        "quality_acc_mean_low": pd.to_numeric(column("quality_acc_ci95_low", None), errors="coerce"),
        "quality_acc_mean_high": pd.to_numeric(column("quality_acc_ci95_high", None), errors="coerce"),
        "quality_source": column("quality_source", "measured").fillna("measured"),  # v1 releases: measured only
        "quality_tasks": column("quality_tasks", "").fillna(""),
    }, index=rows.index)
    random = column("weights", "real") == "random"
    table = table[value.notna() & ~(random & (table["quality_source"] == "measured"))]  # random weights: no measured
    if table.empty:
        return from_records([])
    table["rank"] = table["quality_source"].map({s: i for i, s in enumerate(QUALITY_SOURCES)})
    best = table[table["rank"] == table.groupby(KEY)["rank"].transform("min")]
    out = best.groupby(KEY, as_index=False).agg(
        quality_acc_mean=("quality_acc_mean", "mean"), quality_acc_mean_low=("quality_acc_mean_low", "mean"),
        quality_acc_mean_high=("quality_acc_mean_high", "mean"), quality_source=("quality_source", "first"),
        quality_tasks=("quality_tasks", lambda t: ",".join(sorted({x for v in t for x in str(v).split(",") if x}))))
    return _typed(out[COLUMNS].sort_values(KEY).reset_index(drop=True))


def apply_known_quality(table: pd.DataFrame, known: pd.DataFrame, trusted: tuple[str, ...] = QUALITY_SOURCES
                        ) -> pd.DataFrame:
    """`table` (candidates with `architecture`, `quantization`, `framework` and the predictor's quality columns)
    with each candidate's quality taken from `known` where it has one, else the prediction (`predicted`), and
    blanked where its source is not in `trusted`: what the user does not trust cannot meet a minimum."""
    out = table.copy()
    predicted = out["quality_acc_mean"].notna() if "quality_acc_mean" in out else pd.Series(False, index=out.index)
    for column in ("quality_acc_mean", "quality_acc_mean_low", "quality_acc_mean_high"):
        if column not in out:
            out[column] = float("nan")
    out["quality_source"] = predicted.map({True: "predicted", False: None})
    out["quality_tasks"] = ""
    if not known.empty:
        found = out[KEY].merge(known, on=KEY, how="left").set_index(out.index)
        has = found["quality_acc_mean"].notna()
        for column in COLUMNS[len(KEY):]:
            out.loc[has, column] = found.loc[has, column]
    untrusted = ~out["quality_source"].isin(trusted)
    out.loc[untrusted, ["quality_acc_mean", "quality_acc_mean_low", "quality_acc_mean_high"]] = float("nan")
    out.loc[untrusted, "quality_source"] = None
    out.loc[untrusted, "quality_tasks"] = ""
    return out


def to_records(known: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows for the predictor file (NaN bounds as None)."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in known[COLUMNS].to_dict("records")]


def from_records(records: list[dict[str, Any]]) -> pd.DataFrame:
    return _typed(pd.DataFrame(records, columns=COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """One set of dtypes whether built from rows or read back from a file: floats for values, objects for names."""
    return frame.astype({c: float if c in COLUMNS[3:6] else object for c in COLUMNS})
