"""Runs + requests + quality → one row per configuration, with 95% CIs, percentiles, cost and CO2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.hardware import first_machine, hardware_suffix
from wattcounts_pipeline.core.stats import Z95, t95
from wattcounts_pipeline.core.vocab import CARBON_G_PER_KWH, ELECTRICITY_USD_PER_KWH
from wattcounts_pipeline.quality.derive import BF16_LABELS, MC_TASKS

# Defaults for the release's cost and emission columns; the release states them in its card.
J_PER_KWH = 3.6e6

# Headline metric per task for `quality_acc_mean` (multiple-choice accuracy only).
MC_TASK_METRICS = {"wc_arc_easy": "acc", "wc_arc_challenge": "acc", "wc_hellaswag": "acc_norm",
                   "wc_piqa": "acc", "wc_boolq": "acc", "wc_lambada_openai": "acc"}
QUALITY_COLUMNS = ["quality_tasks", "quality_acc_mean", "quality_source", "quality_acc_ci95_low",
                   "quality_acc_ci95_high"]
NO_QUALITY = {"quality_tasks": "", "quality_acc_mean": None, "quality_source": None, "quality_acc_ci95_low": None,
              "quality_acc_ci95_high": None}

CONFIG_COLUMNS = ["configuration_id", "experiment", "model", "weights", "architecture", "quantization",
                  "framework", "dtype", "engine_args_json", "workload", "batch_size", "energy_method",
                  "hardware_id", "gpu_name", "gpu_count", "parallelism", "cpu_model", "source"]


def ci95(mean: pd.Series, std: pd.Series, n: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Student-t 95% interval of the mean, vectorized over groups (NaN where n < 2)."""
    half = pd.Series(t95(n), index=n.index) * std / np.sqrt(n)
    half = half.where(n >= 2)
    return mean - half, mean + half


def aggregate(runs: pd.DataFrame, requests: pd.DataFrame, quality: pd.DataFrame,
              electricity_usd_per_kwh: float = ELECTRICITY_USD_PER_KWH,
              carbon_g_per_kwh: float = CARBON_G_PER_KWH) -> pd.DataFrame:
    """The configurations table (validated runs in, contract-conformed frame out)."""
    contract = load_contract("configurations")
    if runs.empty:
        return contract.empty_frame()
    runs, requests = _with_identity(runs, requests)
    runs = runs.assign(input_tokens=runs["input_tokens_total"] / runs["num_requests"],
                       output_tokens=runs["output_tokens_total"] / runs["num_requests"],
                       temperature_max_c=runs[["temperature_start_c", "temperature_end_c"]].max(axis=1))
    if "parallelism" not in runs:  # rows recorded before the column existed
        runs = runs.assign(parallelism=None)
    g = runs.groupby("configuration_id", sort=True)
    out = g[CONFIG_COLUMNS[1:]].first()
    out["energy_per_token_j_by_gpu"] = _energy_per_token_by_gpu(runs)
    out = out.join(_group_means(runs, ["input_tokens", "output_tokens", "energy_per_token_j", "energy_per_token_net_j",
                                       "energy_per_request_j", "tokens_per_s", "mean_power_w", "idle_power_w"]))
    split = runs.assign(prefill_energy_per_request_j=_numeric(runs, "prefill_energy_j") / runs["num_requests"],
                        decode_energy_per_token_j=_numeric(runs, "decode_energy_per_token_j"),
                        energy_per_token_net_cold_j=_numeric(runs, "energy_per_token_net_cold_j"))
    out = out.join(split.groupby("configuration_id")[["prefill_energy_per_request_j", "decode_energy_per_token_j",
                                                      "energy_per_token_net_cold_j"]].mean())
    out["n_runs"] = g.size()
    out["temperature_max_c"] = g["temperature_max_c"].max()
    stds = g[["energy_per_token_j", "tokens_per_s"]].std(ddof=1)
    out["energy_per_token_j_std"] = stds["energy_per_token_j"]
    out["energy_per_token_j_ci95_low"], out["energy_per_token_j_ci95_high"] = ci95(
        out["energy_per_token_j"], stds["energy_per_token_j"], out["n_runs"])
    out["tokens_per_s_ci95_low"], out["tokens_per_s_ci95_high"] = ci95(
        out["tokens_per_s"], stds["tokens_per_s"], out["n_runs"])
    kwh_per_1m = out["energy_per_token_j"] * 1e6 / J_PER_KWH
    out["cost_per_1m_tokens_usd"] = kwh_per_1m * electricity_usd_per_kwh
    out["co2_per_1m_tokens_g"] = kwh_per_1m * carbon_g_per_kwh
    if not requests.empty:
        r = requests.groupby("configuration_id")
        for col in ("ttft_s", "tpot_s", "e2e_s"):
            stem = col[:-2]
            out[f"{stem}_p50_s"] = r[col].median()
            out[f"{stem}_p90_s"] = r[col].quantile(0.9)
    # rows from before provenance existed were all measured and carried no intervals
    defaults = {"source": "measured", "stderr": np.nan, "value_ci95_low": np.nan, "value_ci95_high": np.nan}
    quality = quality.assign(**{c: v for c, v in defaults.items() if c not in quality})
    quality_cols = _quality_columns(out, quality) if not quality.empty \
        else pd.DataFrame({**NO_QUALITY, "quality_acc_mean": np.nan}, index=out.index)
    return contract.conform(out.join(quality_cols).reset_index())


def configuration_keys(runs: pd.DataFrame) -> pd.Series:
    """The configuration each run counts towards. Our rows: their configuration_id. Contributed rows:
    `<configuration_id>@<bundle id>`. Either way a key measured on more than one machine (`hardware_id`: a spec
    with `hardware: any` that one call ran on an H100 and another on an H200, or one bundle's two machines) is
    one configuration per machine, never one row with the first card's name: the machine measured first keeps
    the key (`first_machine`), the others get a hardware hash appended."""
    source = runs["source"].astype(str)
    submitted = source.str.startswith("submission:").to_numpy()
    ids = runs["configuration_id"].astype(str)
    key = ids.where(~submitted, ids + "@" + source.str.removeprefix("submission:"))
    hardware = runs["hardware_id"].astype(str)
    mixed = (hardware.groupby(key).transform("nunique") > 1).to_numpy()
    if not submitted.any() and not mixed.any():
        return runs["configuration_id"]
    started = (runs["started_at"] if "started_at" in runs else pd.Series("", index=runs.index)).fillna("").astype(str)
    earliest = pd.DataFrame({"key": key, "hardware": hardware, "started": started})[mixed] \
        .groupby(["key", "hardware"])["started"].min()
    keeps = {k: first_machine(dict(g.droplevel(0).items())) for k, g in earliest.groupby(level=0)}
    plain = ~mixed | (hardware == key.map(keeps)).to_numpy()
    return key.where(plain, key + "-" + hardware.map(hardware_suffix))


def _with_identity(runs: pd.DataFrame, requests: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and requests relabelled with `configuration_keys` (a no-op for our own rows on one card each)."""
    keys = configuration_keys(runs)
    if keys.equals(runs["configuration_id"]):
        return runs, requests
    runs = runs.assign(configuration_id=keys)
    if not requests.empty:
        by_run = runs.drop_duplicates("run_id").set_index("run_id")["configuration_id"]
        requests = requests.assign(configuration_id=requests["run_id"].map(by_run).fillna(requests["configuration_id"]))
    return runs, requests


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A float column, NaN throughout where older rows lack it."""
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def _energy_per_token_by_gpu(runs: pd.DataFrame) -> pd.Series:
    """Per configuration, the mean J/token of each GPU (JSON list); None where runs carry no per-GPU energy.

    Vectorised over configurations: the lists are parsed once, then each list width is one array, summed per
    configuration in row order as `np.mean(axis=0)` of that configuration's rows would (same float result).
    """
    if "gpu_energy_j_by_gpu" not in runs:
        return pd.Series(None, index=runs["configuration_id"].unique(), dtype=object)
    codes, keys = pd.factorize(runs["configuration_id"], sort=True)
    result = np.full(len(keys), None, dtype=object)
    raw = runs["gpu_energy_j_by_gpu"]
    if isinstance(raw.dtype, pd.StringDtype):
        has = raw.notna().to_numpy()
    else:
        has = np.fromiter((isinstance(v, str) for v in raw.to_numpy(dtype=object)), dtype=bool, count=len(raw))
    rows = np.flatnonzero(has)
    if len(rows):
        texts = raw.to_numpy(dtype=object)[rows]
        lists = _parse_lists(texts)
        widths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        group = codes[rows]
        low = np.full(len(keys), np.iinfo(np.int64).max)
        high = np.full(len(keys), -1)
        np.minimum.at(low, group, widths)
        np.maximum.at(high, group, widths)
        uniform = low == high  # every list of the configuration has the same length (False: none there)
        tokens = runs["output_tokens_total"].to_numpy()[rows]
        for width in np.unique(widths[uniform[group]]):  # one pass per list width (1, 2, 4, 8 GPUs)
            pick = np.flatnonzero((widths == width) & uniform[group])
            order = pick[np.argsort(group[pick], kind="stable")]  # configuration by configuration, row order
            per_token = np.array([lists[i] for i in order]) / tokens[order][:, None]
            firsts, means = _row_means_by_group(per_token, group[order])
            result[firsts] = [json.dumps([round(float(v), 6) for v in m]) for m in means.tolist()]
    return pd.Series(result, index=keys, dtype=object)


def _group_means(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per configuration, the mean of each column over its runs (NaN skipped), summed row by row in run order.

    Why not `groupby().mean()`: its last bit depends on how the frame lies in memory (runs relabelled by
    `configuration_keys` gave other bits for the same values), so adding a configuration on another card
    would mark unchanged ones as changed in the release changelog. This sum depends only on the values."""
    codes, keys = pd.factorize(runs["configuration_id"], sort=True)
    order = np.argsort(codes, kind="stable")
    values = runs[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)[order]
    present = ~np.isnan(values)
    firsts, sums, _ = _row_sums_by_group(np.where(present, values, 0.0), codes[order])
    _, counts, _ = _row_sums_by_group(present.astype(float), codes[order])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return pd.DataFrame(means, index=pd.Index(keys[firsts], name="configuration_id"), columns=columns)


def _row_means_by_group(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `values` (n × k) averaged per run of equal `groups` (sorted): the groups and their means, bit
    for bit `values[rows].mean(axis=0)` of each group (see `_row_sums_by_group`)."""
    firsts, sums, sizes = _row_sums_by_group(values, groups)
    return firsts, sums / sizes[:, None]


def _row_sums_by_group(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of `values` (n × k) summed per run of equal `groups` (sorted): the groups, the sums and the group
    sizes. numpy sums one column pairwise and wider ones row by row, so groups of one size are stacked and summed
    the same way (a loop over sizes, not over groups)."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sizes = np.diff(np.r_[starts, len(groups)])
    width = values.shape[1]
    sums = np.empty((len(starts), width))
    for size in np.unique(sizes):
        which = np.flatnonzero(sizes == size)
        rows = (starts[which][:, None] + np.arange(size)).ravel()
        stack = values[rows].reshape(len(which), size, width)
        if width == 1:
            part = np.ascontiguousarray(stack[:, :, 0]).sum(axis=1)[:, None]  # pairwise, as numpy's mean
        else:
            part = stack[:, 0, :].copy()
            for i in range(1, size):  # row after row, as numpy's mean over axis 0
                part += stack[:, i, :]
        sums[which] = part
    return groups[starts], sums, sizes


def _parse_lists(texts: np.ndarray) -> list:
    """`json.loads` of each text, in one parse when they are all plain JSON lists."""
    try:
        parsed = json.loads("[" + ",".join(texts) + "]")
        if len(parsed) == len(texts) and all(isinstance(x, list) for x in parsed):
            return parsed
    except ValueError:
        pass
    return [json.loads(v) for v in texts]


def _quality_columns(out: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """`_quality_for` of each configuration, computed once per model + quantization + framework + weights."""
    keys = ["model", "quantization", "framework", "weights"]
    distinct = out[keys].drop_duplicates()
    found = pd.DataFrame([_quality_for(row, quality) for _, row in distinct.iterrows()], columns=QUALITY_COLUMNS)
    table = pd.concat([distinct.reset_index(drop=True), found], axis=1)
    merged = out[keys].merge(table, on=keys, how="left", validate="many_to_one")
    return merged[QUALITY_COLUMNS].set_axis(out.index)


def _quality_for(run: pd.Series, quality: pd.DataFrame) -> dict[str, object]:
    """Measured quality of the same model + quantization + framework on real weights wins; otherwise the published
    bf16 score (bf16 weights; the derived stand-in where no authors' score exists) or the derived one (other
    formats). Random weights never get a measured score: they are credited with what the real weights of their
    architecture score in that format, and say so."""
    same = (quality["model"] == run["model"]) & (quality["quantization"] == run["quantization"])
    if run["weights"] == "real":
        measured = quality[same & (quality["framework"] == run["framework"]) & (quality["source"] == "measured")]
        if not measured.empty:
            return _measured_quality(measured)
    if run["quantization"] in BF16_LABELS:
        rows = quality[(quality["model"] == run["model"]) & (quality["source"] == "published")]
        source = "published"
        if rows.empty:  # no authors' score: another lab's, a derived stand-in (quality/derive.py)
            rows = quality[(quality["model"] == run["model"]) & quality["quantization"].isin(BF16_LABELS)
                           & (quality["source"] == "derived")]
            source = "derived"
    else:
        rows = quality[same & (quality["framework"] == run["framework"]) & (quality["source"] == "derived")]
        source = "derived"
    rows = rows[rows["task"].isin(MC_TASKS)].drop_duplicates("task")  # per task the first checkpoint listed (base)
    if rows.empty:
        return dict(NO_QUALITY)
    return {"quality_tasks": ",".join(sorted(rows["task"])), "quality_acc_mean": float(rows["value"].mean()),
            "quality_source": source, "quality_acc_ci95_low": float(rows["value_ci95_low"].mean()),
            "quality_acc_ci95_high": float(rows["value_ci95_high"].mean())}


def _measured_quality(q: pd.DataFrame) -> dict[str, object]:
    """Mean headline accuracy over the multiple-choice tasks lm-eval ran, with a 95% interval from the stderrs."""
    tasks = sorted(q["task"].unique())
    heads = [q[(q["task"] == t) & (q["metric"] == MC_TASK_METRICS[t])] for t in tasks if t in MC_TASK_METRICS]
    accs = [(h["value"].mean(), h["stderr"].mean()) for h in heads if not h.empty and pd.notna(h["value"].mean())]
    if not accs:
        return {**NO_QUALITY, "quality_tasks": ",".join(tasks)}
    mean = float(np.mean([a for a, _ in accs]))
    se = [s for _, s in accs]
    half = Z95 * float(np.sqrt(np.sum(np.square(se)))) / len(accs) if all(pd.notna(x) for x in se) else None
    return {"quality_tasks": ",".join(tasks), "quality_acc_mean": mean, "quality_source": "measured",
            "quality_acc_ci95_low": None if half is None else mean - half,
            "quality_acc_ci95_high": None if half is None else mean + half}
