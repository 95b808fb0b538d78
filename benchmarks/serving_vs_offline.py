"""What serving costs over the offline batch: each recorded GPU serving sweep's knee beside the offline batch row of
the same model, format and engine (issue #19's acceptance).

Usage: .venv/bin/python benchmarks/serving_vs_offline.py RELEASE_DIR [--out benchmarks/results/serving_vs_offline.md]
RELEASE_DIR is a release built from the recorded folders (`benchmarks/recorded_release.py /tmp/rel` writes
/tmp/rel/0.0.1). The load points are every `serving_*.jsonl` under data/measurements/.

The knee is the load level with the highest goodput (requests/s that met the SLO; ties go to fewer users): where a
team would run the server. Each knee is set beside two offline `llamacpp-server` rows of the same model and GGUF
type at a batch equal to the server's slots, on the same card: one in the serving scenario's own shape (prompt and
answer lengths of the sweep's workload, e.g. chat-512-256 for the chat scenario's 512/256), so the ratio is serving
alone, and one in decode-128-256, the workload of most offline rows. A side with no row on that card says "none".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wattcounts_pipeline.serving.store import recorded_load_points


def knees(points: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep: its knee (highest goodput, fewest users on a tie) and its saturation point (highest
    achieved rate)."""
    rows = []
    for (sweep, hardware), sweep_points in points.groupby(["sweep_id", "hardware_id"], sort=True):
        ordered = sweep_points.sort_values("point_index")
        knee = ordered.loc[ordered["goodput_per_s"].idxmax()]
        top = ordered.loc[ordered["achieved_rate_per_s"].idxmax()]
        slots = json.loads(knee["engine_args_json"]).get("parallel")
        output_tokens = ordered["output_tokens_total"].sum() / ordered["requests_completed"].sum()
        rows.append({"sweep_id": sweep, "hardware_id": hardware, "model": knee["model"],
                     "input_tokens": round(knee["input_tokens_mean"]), "output_tokens": round(output_tokens),
                     "quantization": knee["quantization"], "slots": slots, "knee_users": knee["users"],
                     "knee_rate_per_s": knee["achieved_rate_per_s"], "knee_goodput_per_s": knee["goodput_per_s"],
                     "knee_j_per_request": knee["energy_per_request_j"],
                     "knee_j_per_token": knee["energy_per_output_token_j"], "knee_ttft_p90_s": knee["ttft_p90_s"],
                     "knee_tpot_p90_s": knee["tpot_p90_s"], "top_users": top["users"],
                     "top_rate_per_s": top["achieved_rate_per_s"], "top_j_per_token": top["energy_per_output_token_j"]})
    return pd.DataFrame(rows)


def offline_match(configurations: pd.DataFrame, model: str, quantization: str, batch: int, hardware_id: str,
                  input_tokens: int, output_tokens: int) -> pd.Series | None:
    """The offline llama-server row of this model and format at `batch`, on card `hardware_id`, whose workload has
    these prompt and answer lengths, or None."""
    match = configurations[(configurations["model"] == model) & (configurations["quantization"] == quantization)
                           & (configurations["framework"] == "llamacpp-server")
                           & (configurations["batch_size"] == batch) & (configurations["hardware_id"] == hardware_id)
                           & (configurations["input_tokens"] == input_tokens)
                           & (configurations["output_tokens"] == output_tokens)]
    return match.iloc[0] if not match.empty else None


def _j_per_token(off: pd.Series | None) -> float:
    return float(off["energy_per_token_j"]) if off is not None else float("nan")


def table(configurations: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    out = []
    for k in knees(points).itertuples():
        batch = int(k.slots or 0)
        same_shape = _j_per_token(offline_match(configurations, k.model, k.quantization, batch, k.hardware_id,
                                                k.input_tokens, k.output_tokens))
        decode = _j_per_token(offline_match(configurations, k.model, k.quantization, batch, k.hardware_id, 128, 256))
        out.append({
            "model": k.model, "format": k.quantization, "card": k.hardware_id.removeprefix("1x NVIDIA "),
            "knee users": int(k.knee_users), "knee req/s": k.knee_rate_per_s, "goodput req/s": k.knee_goodput_per_s,
            "knee J/request": k.knee_j_per_request, "knee J/out token": k.knee_j_per_token,
            "knee p90 TTFT s": k.knee_ttft_p90_s, "knee p90 TPOT s": k.knee_tpot_p90_s,
            "saturated J/out token": k.top_j_per_token,
            f"offline b{batch} {k.input_tokens}/{k.output_tokens} J/token": same_shape,
            "knee / offline same shape": k.knee_j_per_token / same_shape,
            "saturated / offline same shape": k.top_j_per_token / same_shape,
            f"offline b{batch} 128/256 J/token": decode,
            "knee / offline 128/256": k.knee_j_per_token / decode,
        })
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serving_vs_offline.md")
    args = parser.parse_args(argv)
    configurations = pd.read_parquet(args.release / "data" / "configurations.parquet")
    points = recorded_load_points(sorted(p for p in (REPO / "data" / "measurements").iterdir() if p.is_dir()))
    points = points[points["gpu_count"] > 0]
    result = table(configurations, points)
    first = points.iloc[0]
    text = "\n".join([
        "# Serving at the knee against the offline batch (`benchmarks/serving_vs_offline.py`)", "",
        (f"{points['sweep_id'].nunique()} GPU serving sweeps ({len(points)} load points; workload `{first['workload']}`: "
        f"{first['input_tokens_mean']:.0f} prompt / {first['output_tokens_total'] / first['requests_completed']:.0f} output tokens, closed loop; "
        f"SLO p90 TTFT ≤ {first['slo_ttft_s']} s, TPOT ≤ {first['slo_tpot_s']} s). Offline rows: `llamacpp-server` "
        "on the same card, batch = the server's slots, in the sweep's own prompt/answer lengths and in "
        "decode-128-256. Gross GPU energy per output token. The knee is the level of highest goodput."),
        "",
        result.to_markdown(index=False, floatfmt=".4g"), ""])
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
