"""benchmarks/serving_vs_offline.py on the recorded H100 sweeps: the knee is the level of highest goodput, and the
ratio divides its J/output token by the offline llama-server row of the same model and format at the slots' batch."""

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
    offline = pd.DataFrame([{"model": "llama-3.1-8b", "quantization": "Q4_K_M", "framework": "llamacpp-server",
                             "workload": "decode-128-256", "batch_size": b, "energy_per_token_j": j,
                             "hardware_id": "1x NVIDIA H200"} for b, j in ((8, 0.6), (32, 0.25))])
    table = serving_vs_offline.table(offline, points).set_index(["model", "format"])
    assert table.loc[("llama-3.1-8b", "Q4_K_M"), "knee / offline"] == llama["knee_j_per_token"] / 0.25
    assert table.loc[("qwen2.5-7b", "Q8_0"), "offline card"] == "none"  # no offline row given: no ratio
