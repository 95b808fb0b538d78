"""`sweep --cold-idle-s`: the idle floor measured before any model loads, carried by every row of that meter."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import TESTS
from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.cli import main
from wattcounts_pipeline.core.validation import validate_table

IDLE = TESTS / "fixtures" / "traces" / "h200_idle.jsonl"

DOC = {"name": "cold", "defaults": {"repetitions": 2, "idle_s": 0.2},
       "models": {"tiny": {"source": "config:models/tiny-llama", "weights": "random", "architecture": "llama"}},
       "workloads": {"w": {"kind": "fixed", "input_tokens": 8, "output_tokens": 4, "num_requests": 2}},
       "matrix": [{"model": "tiny", "framework": "transformers", "quantization": "F32", "dtype": "float32",
                   "engine_args": {"device": "cpu"}, "batch_sizes": [1, 2]}]}


def _sweep(tmp_path: Path, *extra: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    experiment = tmp_path / "cold.yaml"
    experiment.write_text(yaml.safe_dump(DOC))
    out = tmp_path / "out"
    assert main(["sweep", str(experiment), "--out", str(out), *(extra or ("--meter", "estimate"))]) == 0
    return (pd.read_json(out / "runs.jsonl", lines=True), pd.read_json(out / "requests.jsonl", lines=True),
            json.loads((out / "meter.json").read_text()))


def test_cold_floor_reaches_every_row_and_the_release(tmp_path: Path) -> None:
    # a real H200 idle trace replayed: the floor is what that card drew (128-ish W), not a placeholder
    runs, requests, meter = _sweep(tmp_path, "--meter", f"replay:{IDLE}", "--cold-idle-s", "0.3")
    cold_w = meter["cold_idle_power_w"]
    assert 100 < cold_w < 160 and meter["cold_idle_s"] == 0.3
    assert len(runs) == 4 and runs["cold_idle_power_w"].to_numpy() == pytest.approx([cold_w] * 4, rel=1e-9)
    expected = (runs["energy_j"] - cold_w * runs["duration_s"]) / runs["output_tokens_total"]
    assert runs["energy_per_token_net_cold_j"].to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-9)
    assert runs["gpu_uuids"].isna().all() and (runs["gpu_name"] == "NVIDIA H200").all()  # the trace names no UUID
    validate_table("runs", runs)
    table = aggregate(runs, requests, pd.DataFrame()).set_index("configuration_id")
    means = runs.groupby("configuration_id")["energy_per_token_net_cold_j"].mean()
    assert table.loc[means.index, "energy_per_token_net_cold_j"].to_numpy() == pytest.approx(means.to_numpy())


def test_without_the_option_rows_say_not_measured(tmp_path: Path) -> None:
    runs, requests, meter = _sweep(tmp_path)
    assert "cold_idle_power_w" not in meter
    assert runs["cold_idle_power_w"].isna().all() and runs["energy_per_token_net_cold_j"].isna().all()
    table = aggregate(runs, requests, pd.DataFrame())
    assert table["energy_per_token_net_cold_j"].isna().all()
