"""Grouped cross-validation of the predictor against two baselines, so its error is known before it is trusted.

Each grouping holds out one whole group at a time (an architecture, a device, a framework): the question is how
well the model predicts something it has never measured, not a row beside one it has. Baselines:
- roofline: the plain roofline value times one scalar fitted on the training folds (log space);
- nearest: the measured value of the closest training row (same device and framework where there is one;
  closest in active parameters, batch, lengths and bytes per weight).
Both baselines get split-conformal intervals from their own training residuals, so coverage compares fairly.
`host` holds out one measuring host at a time where the rows say which (`host_key`, see model/hosts.py): eager
decode and server loops are bound by the host CPU, so a new host is a question of its own. Every held-out
prediction is kept (`fold_predictions`), so the same folds can be scored per framework or per host
(`summarize`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from wattcounts_pipeline.model.predictor import (
    DEFAULT_COVERAGE,
    TARGETS,
    TargetSpec,
    conformal_half_width,
    fit,
    training_table,
)

logger = logging.getLogger(__name__)

GROUPINGS = {"architecture": "arch_key", "hardware": "hardware_key", "framework": "framework",
             "quantization": "quant_key", "host": "host_key"}
LARGEST_SHARE = 0.25
"""`largest` holds out this share of the architectures, the largest by total parameters, in one fold: users ask
about models bigger than any measured, and leave-one-out does not show how the model extrapolates there."""
NEIGHBOUR_FEATURES = ["log_active_params", "log_batch_size", "log_input_tokens", "log_output_tokens",
                      "bytes_per_weight"]
RESULT_COLUMNS = ["grouping", "target", "model", "mape", "median_ape", "coverage", "n_rows", "n_groups"]
PREDICTION_COLUMNS = ["grouping", "held_out", "row", "target", "model", "y", "point", "low", "high"]

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


def roofline_baseline(spec: TargetSpec, y_train: np.ndarray, train_feats: pd.DataFrame,
                      test_feats: pd.DataFrame, coverage: float) -> Prediction:
    """roofline · exp(c), c the mean log ratio measured/roofline on the training rows."""
    r = spec.residual(y_train, train_feats, spec.roofline)
    c = float(np.mean(r))
    q = conformal_half_width(r - c, coverage)
    z = np.full(len(test_feats), c)
    return (spec.value(z, test_feats, spec.roofline), spec.value(z - q, test_feats, spec.roofline),
            spec.value(z + q, test_feats, spec.roofline))


def _nearest_index(query: pd.DataFrame, pool: pd.DataFrame, exclude_self: bool,
                   block_rows: int = 512) -> np.ndarray:
    """Position in `pool` of each query row's nearest neighbour (L1 over NEIGHBOUR_FEATURES), preferring the same
    device and framework. In blocks of `block_rows` queries: the full query × pool × feature array would be
    4 GB at 10,000 rows; a block is `block_rows` × pool."""
    qx, px = query[NEIGHBOUR_FEATURES].to_numpy(float), pool[NEIGHBOUR_FEATURES].to_numpy(float)
    q_hw, p_hw = query["hardware_key"].to_numpy(), pool["hardware_key"].to_numpy()
    q_fw, p_fw = query["framework"].to_numpy(), pool["framework"].to_numpy()
    out = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), block_rows):
        rows = slice(start, start + block_rows)
        distance = np.zeros((len(qx[rows]), len(px)))
        for j in range(px.shape[1]):
            distance += np.abs(qx[rows, j][:, None] - px[None, :, j])
        same_fw = q_fw[rows][:, None] == p_fw[None, :]
        same_hw_fw = same_fw & (q_hw[rows][:, None] == p_hw[None, :])
        tier = np.where(same_hw_fw, 0.0, np.where(same_fw, 1.0, 2.0))  # same device+framework, same framework, any
        if exclude_self:
            index = np.arange(start, start + len(distance))
            tier[index - start, index] = np.inf
        best_tier = tier.min(axis=1, keepdims=True)
        out[rows] = np.where(tier == best_tier, distance, np.inf).argmin(axis=1)
    return out


def nearest_baseline(spec: TargetSpec, y_train: np.ndarray, train_feats: pd.DataFrame,
                     test_feats: pd.DataFrame, coverage: float) -> Prediction:
    """The nearest measured training row's value; interval from leave-one-out nearest-neighbour residuals."""
    r_train = spec.residual(y_train, train_feats, spec.roofline)
    if len(y_train) > 1:
        loo = _nearest_index(train_feats, train_feats, exclude_self=True)
        q = conformal_half_width(r_train - r_train[loo] + _anchor_shift(spec, train_feats, train_feats, loo), coverage)
    else:
        q = np.inf
    idx = _nearest_index(test_feats, train_feats, exclude_self=False)
    # the neighbour's value, i.e. its residual re-expressed against the test row's own anchor
    z = r_train[idx] - _anchor_shift(spec, test_feats, train_feats, idx)
    return (spec.value(z, test_feats, spec.roofline), spec.value(z - q, test_feats, spec.roofline),
            spec.value(z + q, test_feats, spec.roofline))


def _anchor_shift(spec: TargetSpec, query: pd.DataFrame, pool: pd.DataFrame, idx: np.ndarray) -> np.ndarray:
    """log(query anchor / neighbour anchor): turns 'same value as the neighbour' into residual units."""
    if spec.roofline is None:
        return np.zeros(len(idx))
    return (np.log(query[spec.roofline].to_numpy(float)) - np.log(pool[spec.roofline].to_numpy(float)[idx]))


FoldResult = list[tuple[str, str, np.ndarray, np.ndarray, Prediction]]


def _held_out_fold(rows: pd.DataFrame, feats: pd.DataFrame, test: np.ndarray, coverage: float) -> FoldResult:
    """(target, model name, held-out row positions, their values, prediction) for one held-out group."""
    train = ~test
    predictor = fit(rows[train], feats[train], release_tag="cv", coverage=coverage, warn=False)
    model_pred = predictor.predict_features(feats[test])
    out: FoldResult = []
    for spec in TARGETS:
        test_ok = spec.usable(rows[test]).to_numpy()
        train_ok = spec.usable(rows[train]).to_numpy()
        if not test_ok.any() or not train_ok.any():
            continue
        y = rows[test][spec.name].to_numpy(float)[test_ok]
        positions = np.flatnonzero(test)[test_ok]
        tf, trf = feats[test][test_ok], feats[train][train_ok]
        y_train = rows[train][spec.name].to_numpy(float)[train_ok]
        cols = [spec.name, f"{spec.name}_low", f"{spec.name}_high"]
        model = tuple(model_pred[c].to_numpy()[test_ok] for c in cols)
        out.append((spec.name, "model", positions, y, (model[0], model[1], model[2])))
        if spec.roofline is not None:
            out.append((spec.name, "roofline", positions, y, roofline_baseline(spec, y_train, trf, tf, coverage)))
        out.append((spec.name, "nearest", positions, y, nearest_baseline(spec, y_train, trf, tf, coverage)))
    return out


Fold = tuple[str, str, int, np.ndarray]
"""(grouping, the group held out, number of groups, held-out row mask)."""


def held_out_folds(feats: pd.DataFrame, groupings: tuple[str, ...] | None = None) -> tuple[list[Fold], list[str]]:
    """Every fold of `groupings` (default: all of GROUPINGS and `largest`), and notes: the groupings skipped
    and why, and which architectures `largest` held out. `host` needs a `host_key` column; rows with an empty
    one are never held out (they stay in every training set)."""
    wanted = (*GROUPINGS, "largest") if groupings is None else groupings
    unknown = sorted(set(wanted) - {*GROUPINGS, "largest"})
    if unknown:
        raise ValueError(f"unknown groupings {unknown}; known: {', '.join([*GROUPINGS, 'largest'])}")
    notes: list[str] = []
    folds: list[Fold] = []
    for grouping, column in GROUPINGS.items():
        if grouping not in wanted:
            continue
        if column not in feats:
            notes.append(f"{grouping}: skipped, the rows do not say which {grouping} measured them")
            logger.info("cross-validation: %s", notes[-1])
            continue
        groups = feats[column].astype(str).to_numpy()
        unique = sorted(set(groups) - {""})
        if len(unique) < 2:
            notes.append(f"{grouping}: skipped, the data cover only {len(unique)} group(s) ({', '.join(unique)})")
            logger.warning("cross-validation: %s", notes[-1])
            continue
        folds += [(grouping, str(group), len(unique), groups == group) for group in unique]
    largest = largest_architectures(feats) if "largest" in wanted else []
    if largest:
        folds.append(("largest", "+".join(largest), 1, feats["arch_key"].isin(largest).to_numpy()))
        notes.append(f"largest: held out {', '.join(largest)}, trained on the smaller architectures")
        logger.info("cross-validation: %s", notes[-1])
    elif "largest" in wanted:
        notes.append("largest: skipped, fewer than 3 architectures")
        logger.warning("cross-validation: %s", notes[-1])
    return folds, notes


def largest_architectures(feats: pd.DataFrame, share: float = LARGEST_SHARE) -> list[str]:
    """The largest `share` of the architectures by total parameters (at least one), leaving at least two to
    train on; empty when there are fewer than three."""
    params = feats.groupby("arch_key")["log_total_params"].first().sort_values(ascending=False)
    if len(params) < 3:
        return []
    n = min(max(1, int(np.ceil(share * len(params)))), len(params) - 2)
    return list(params.index[:n])


def fold_predictions(rows: pd.DataFrame, feats: pd.DataFrame, folds: list[Fold],
                     coverage: float = DEFAULT_COVERAGE, n_jobs: int = -1) -> pd.DataFrame:
    """Every held-out prediction of every fold (PREDICTION_COLUMNS; `row` is the position in `rows`), the
    model's and the baselines'. Folds run in parallel over `n_jobs` processes (-1: all cores): each fits a
    whole predictor."""
    from joblib import Parallel, delayed  # training only

    results = Parallel(n_jobs=n_jobs)(delayed(_held_out_fold)(rows, feats, test, coverage)
                                      for _, _, _, test in folds)
    if n_jobs != 1:  # loky's idle workers live 300 s and the process waits for them at exit: a Dagster step
        from joblib.externals.loky import get_reusable_executor  # would hold the next step back that long

        get_reusable_executor().shutdown(wait=True)
    parts = [pd.DataFrame({"grouping": grouping, "held_out": group, "row": positions, "target": target,
                           "model": name, "y": y, "point": pred[0], "low": pred[1], "high": pred[2]})
             for (grouping, group, _, _), result in zip(folds, results, strict=True)
             for target, name, positions, y, pred in result]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS)


def summarize(predictions: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """MAPE (%), median absolute percentage error (%), interval coverage, rows and groups per grouping, target,
    model and any extra columns `by` of `predictions` (e.g. the framework or host of each held-out row)."""
    keys = ["grouping", "target", "model", *by]
    if predictions.empty:
        return pd.DataFrame(columns=[*keys, *RESULT_COLUMNS[3:]])
    p = predictions.assign(ape=(predictions["point"] - predictions["y"]).abs() / predictions["y"].abs() * 100,
                           inside=(predictions["y"] >= predictions["low"]) & (predictions["y"] <= predictions["high"]))
    table = p.groupby(keys, sort=False).agg(mape=("ape", "mean"), median_ape=("ape", "median"),
                                            coverage=("inside", "mean"), n_rows=("ape", "size"),
                                            n_groups=("held_out", "nunique")).reset_index()
    largest = table["grouping"] == "largest"  # one fold holding out several architectures at once
    table.loc[largest, "n_groups"] = 1
    table["coverage"] = table["coverage"].astype(float)
    return table[[*keys, *RESULT_COLUMNS[3:]]]


def cross_validate(rows: pd.DataFrame, feats: pd.DataFrame, coverage: float = DEFAULT_COVERAGE,
                   n_jobs: int = -1) -> tuple[pd.DataFrame, list[str]]:
    """CV table (RESULT_COLUMNS) and notes (groupings skipped and why) for already-featurized rows (see
    `training_table`; a `host_key` column adds leave-one-host-out)."""
    folds, notes = held_out_folds(feats)
    table = summarize(fold_predictions(rows, feats, folds, coverage, n_jobs))
    table["n_groups"] = table["grouping"].map({g: n for g, _, n, _ in folds}).astype(int)
    return table[RESULT_COLUMNS], notes


def evaluate(configurations_df: pd.DataFrame, coverage: float = DEFAULT_COVERAGE, n_jobs: int = -1) -> pd.DataFrame:
    """Leave-one-{architecture, hardware, framework, quantization}-out and leave-the-largest-out CV of the model
    and its baselines.

    Columns: grouping, target, model (model | roofline | nearest), mape (%), median_ape (%), coverage (fraction
    inside the nominal `coverage` interval), n_rows, n_groups. Skipped groupings are logged and listed in
    `attrs["notes"]`.
    """
    rows, feats, _ = training_table(configurations_df)
    table, notes = cross_validate(rows, feats, coverage, n_jobs)
    table.attrs["notes"] = notes
    return table
