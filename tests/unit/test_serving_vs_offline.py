"""benchmarks/serving_vs_offline.py on the recorded H100 sweeps: the knee is the level of highest goodput, and the
ratio divides its J/output token by the offline llama-server row of the same model, format and card at the slots'
batch, in the sweep's own prompt/answer lengths (and, beside it, in decode-128-256)."""

from __future__ import annotations

import pandas as pd

from benchmarks import serving_vs_offline
from tests.helpers import REPO
from wattcounts_pipeline.serving.store import recorded_load_points


def test_knee_and_ratio_on_the_recorded_sweeps() -> None:
    points = recorded_load_points([REPO / "data" / "measurements" / "h100-2026-12-05-serving"])
    knees = serving_vs_offline.knees(points).set_index(["model", "quantization"])
    llama = knees.loc[("llama-3.1-8b", "Q4_K_M")]
    assert llama["knee_users"] == 16 and llama["slots"] == 32  # goodput 2.96 req/s; 0 at 32 users (TTFT > 1 s)
    assert llama["knee_j_per_token"] == points[(points["model"] == "llama-3.1-8b") & (points["quantization"] == "Q4_K_M")
                                               & (points["users"] == 16)]["energy_per_output_token_j"].iloc[0]
    h100 = "1x NVIDIA H100 80GB HBM3"
    offline = pd.DataFrame([{"model": "llama-3.1-8b", "quantization": "Q4_K_M", "framework": "llamacpp-server",
                             "input_tokens": i, "output_tokens": 256, "batch_size": b, "energy_per_token_j": j,
                             "hardware_id": card}
                            for i, b, j, card in ((512, 8, 0.6, h100), (512, 32, 0.25, h100), (128, 32, 0.17, h100),
                                                  (512, 32, 0.2, "1x NVIDIA H200"))])
    table = serving_vs_offline.table(offline, points).set_index(["model", "format"])
    row = table.loc[("llama-3.1-8b", "Q4_K_M")]
    assert row["knee / offline same shape"] == llama["knee_j_per_token"] / 0.25  # not the b8 row, not the H200's
    assert row["knee / offline 128/256"] == llama["knee_j_per_token"] / 0.17
    assert pd.isna(table.loc[("qwen2.5-7b", "Q8_0"), "knee / offline same shape"])  # no offline row given: no ratio
