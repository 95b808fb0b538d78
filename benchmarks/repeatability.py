"""Repeatability across device calls: every configuration recorded in two or more sweep folders, its mean J/token
and tokens/s in each, and how far the calls differ.

Usage: python benchmarks/repeatability.py [MEASUREMENTS_DIR] [--json OUT]   (default: data/measurements)

One sweep folder is one device call. For each configuration in ≥ 2 folders it prints the largest relative
difference between the folders' means, |a - b| / min(a, b), for J/token and tokens/s, whether the calls ran on
the same card (`gpu_uuids` in the rows, else `meter.json`), and the median over all such configurations, over
those of the current protocol (≥ 10 s windows) and over same-card pairs: the engines issue asks for ≥ 20
configurations at a median ≤ 3% in J/token. `--protocol` also pairs the specs measured again with ≥ 10 s windows
(experiments/gpu_remeasure.yaml: the same spec but for `min_window_s`, so a configuration of its own) with their
short-window calls: how far the old calls lay from the new protocol's mean.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from wattcounts_pipeline.measure.store import read_table

MIN_WINDOW_S = 10.0  # the current protocol's shortest measured window (a little slack below is jitter)


def _card(folder: Path, runs: pd.DataFrame) -> str:
    if "gpu_uuids" in runs and runs["gpu_uuids"].notna().any():
        return str(runs["gpu_uuids"].dropna().iloc[0])
    meter = folder / "meter.json"
    uuids = json.loads(meter.read_text()).get("gpu_uuids") if meter.exists() else None
    return ",".join(uuids) if uuids else "?"


def per_call_means(root: Path) -> pd.DataFrame:
    """One row per (configuration, sweep folder): mean J/token and tokens/s, shortest window, card."""
    frames = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = read_table(folder, "runs")
        if runs.empty:
            continue
        engine = runs["engine_args_json"] if "engine_args_json" in runs else pd.Series("", index=runs.index)
        g = runs.assign(engine_args_json=engine.fillna("")).groupby("configuration_id").agg(
            energy_per_token_j=("energy_per_token_j", "mean"), tokens_per_s=("tokens_per_s", "mean"),
            min_window_s=("duration_s", "min"), engine_args_json=("engine_args_json", "first"))
        model = str(runs["gpu_name"].dropna().iloc[0]) if "gpu_name" in runs and runs["gpu_name"].notna().any() else "cpu"
        frames.append(g.reset_index().assign(call=folder.name, card=_card(folder, runs), card_model=model))
    return pd.concat(frames, ignore_index=True)


def spread(means: pd.DataFrame) -> pd.DataFrame:
    """Configurations in ≥ 2 calls on one card model (an H100 call and an H200 call of one spec are two
    configurations, not a repeat): the largest relative difference between calls, per metric."""
    rows = []
    for (cid, _), g in means.groupby(["configuration_id", "card_model"]):
        if g["call"].nunique() < 2:
            continue
        rel = {m: float(g[m].max() / g[m].min() - 1) for m in ("energy_per_token_j", "tokens_per_s")}
        rows.append({"configuration_id": cid, "calls": " ".join(g["call"]), "n_calls": g["call"].nunique(),
                     "same_card": g["card"].nunique() == 1 and "?" not in set(g["card"]),
                     "long_windows": bool((g["min_window_s"] >= MIN_WINDOW_S * 0.99).all()),
                     "energy_per_token_rel": rel["energy_per_token_j"], "tokens_per_s_rel": rel["tokens_per_s"]})
    return pd.DataFrame(rows)


def protocol_pairs(means: pd.DataFrame) -> pd.DataFrame:
    """Specs measured with ≥ 10 s windows beside calls of the same spec with shorter ones (same card model, same
    engine arguments, configuration ids equal but for their hash): each short-window call's mean against the
    long-window mean, per metric."""
    means = means.assign(spec=means["configuration_id"].map(lambda c: re.sub(r"-[0-9a-f]{8}$", "", c)),
                         long=means["min_window_s"] >= MIN_WINDOW_S * 0.99)
    rows = []
    for _, g in means.groupby(["spec", "engine_args_json", "card_model"]):
        new, old = g[g["long"]], g[~g["long"]]
        if new.empty or old.empty:
            continue
        ref = {m: float(new[m].mean()) for m in ("energy_per_token_j", "tokens_per_s")}
        for r in old.itertuples():
            rows.append({"spec": r.spec, "call": r.call, "long_call": " ".join(new["call"]),
                         "energy_per_token_j": r.energy_per_token_j, "long_energy_per_token_j": ref["energy_per_token_j"],
                         "energy_per_token_rel": r.energy_per_token_j / ref["energy_per_token_j"] - 1,
                         "tokens_per_s_rel": r.tokens_per_s / ref["tokens_per_s"] - 1})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    out = {}
    for name, part in (("all", table), ("long_windows", table[table["long_windows"]]),
                       ("same_card", table[table["same_card"]])):
        out[name] = {"configurations": len(part),
                     "energy_per_token_median_pct": round(100 * float(part["energy_per_token_rel"].median()), 2)
                     if len(part) else None,
                     "tokens_per_s_median_pct": round(100 * float(part["tokens_per_s_rel"].median()), 2)
                     if len(part) else None}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("data/measurements"))
    parser.add_argument("--json", type=Path, default=None, help="also write the table and summary here")
    parser.add_argument("--protocol", action="store_true", help="also pair short-window calls with ≥ 10 s ones")
    args = parser.parse_args(argv)
    means = per_call_means(args.root)
    table = spread(means)
    if table.empty:
        print("no configuration was measured in two calls")
        return 1
    pd.set_option("display.width", 200)
    shown = table.assign(energy_pct=(100 * table["energy_per_token_rel"]).round(1),
                         tokens_pct=(100 * table["tokens_per_s_rel"]).round(1))
    print(shown[["configuration_id", "n_calls", "same_card", "long_windows", "energy_pct", "tokens_pct"]]
          .to_string(index=False))
    result = summary(table)
    print(json.dumps(result, indent=1))
    document: dict[str, object] = {"summary": result, "configurations": table.to_dict("records")}
    if args.protocol:
        pairs = protocol_pairs(means)
        if pairs.empty:
            print("no spec was measured with both short and >= 10 s windows")
        else:
            print((pairs.assign(energy_pct=(100 * pairs["energy_per_token_rel"]).round(1),
                                tokens_pct=(100 * pairs["tokens_per_s_rel"]).round(1))
                   [["spec", "call", "energy_per_token_j", "long_energy_per_token_j", "energy_pct", "tokens_pct"]])
                  .to_string(index=False))
            within = (pairs.groupby("spec")["energy_per_token_rel"].apply(lambda r: r.abs().max()) <= 0.10)
            print(f"{int(within.sum())} of {len(within)} specs: every short-window call within 10% of the "
                  f"≥ 10 s mean in J/token")
        document["protocol"] = pairs.to_dict("records")
    if args.json:
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
