"""TEST FIXTURES ONLY: load_points rows built through the real row code from made-up outcomes (no measurement): a
chat curve of a one-at-a-time server whose throughput is flat at 0.1 requests/s."""

from __future__ import annotations

from typing import Any

from wattcounts_pipeline.backends.base import RequestResult
from wattcounts_pipeline.meters.base import EnergyReading
from wattcounts_pipeline.serving.loadgen import Outcome
from wattcounts_pipeline.serving.rows import PointContext, is_saturated, load_point_row
from wattcounts_pipeline.serving.spec import parse_serving


def chat_curve_rows(users: tuple[int, ...] = (1, 2, 4)) -> list[dict[str, Any]]:
    doc = {"models": {"gemma3-270m": {"source": "gguf:/x.gguf", "architecture": "gemma3"}},
           "serving": {"workloads": {"chat": {"input_tokens": 512, "output_tokens": 256}},
                       "sweeps": [{"model": "gemma3-270m", "framework": "llamacpp-server", "quantization": "Q4_K_M",
                                   "workload": "chat", "load": {"mode": "closed", "users": list(users)},
                                   "slo": {"ttft_s": 1.0, "tpot_s": 0.1}}]}}
    (spec,) = parse_serving(doc, "fixture")
    rows: list[dict[str, Any]] = []
    previous = None
    for i, n in enumerate(users):
        wait = (n - 1) * 10.0  # each request queues behind the others
        outcomes = [Outcome(k, 0.0, RequestResult(512, 256, start_s=0.0, ttft_s=0.5 + wait, e2e_s=10.0 + wait))
                    for k in range(4)]
        reading = EnergyReading("k", 40.0, {"cpu:estimate": 800.0}, "estimate", ("estimate",))
        ctx = PointContext(spec, i, float(n), 4.0, "llama_cpp.server", "0.3.36", {})
        row = load_point_row(ctx, outcomes, reading, {"server_metrics_source": None})
        row["saturated"] = is_saturated(previous, row, 0.05)
        rows.append(row)
        previous = row
    return rows
