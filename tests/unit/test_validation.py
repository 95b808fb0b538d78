from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.rows import run_row
from wattcounts_pipeline.core.contracts import TABLES, load_contract
from wattcounts_pipeline.core.validation import validate_table

valid_rows = st.builds(
    run_row,
    energy_j=st.floats(1500, 1e5),
    output_tokens=st.integers(1, 100_000),
    duration_s=st.floats(1.0, 600.0),
    idle_power_w=st.floats(50.0, 140.0),
    repetition=st.integers(0, 50),
).filter(lambda r: r["mean_power_w"] >= 0.5 * r["idle_power_w"] and r["mean_power_w"] <= 770)

# (column, bad value or function of the row, expected check text)
MUTATIONS = [
    ("energy_j", -1.0, "greater_than_or_equal_to"),
    ("framework", "tensorrt", "isin"),
    ("weights", "pretrained", "isin"),
    ("energy_method", "guess", "isin"),
    ("duration_s", 0.0, "greater_than"),
    ("output_tokens_total", 0, "greater_than_or_equal_to"),
    ("started_at", "yesterday", "str_matches"),
    ("model", None, "not_nullable"),
    ("energy_per_token_j", lambda r: r["energy_per_token_j"] * 1.5, "equals energy_j / output_tokens_total"),
    ("tokens_per_s", lambda r: r["tokens_per_s"] * 2, "equals output_tokens_total / duration_s"),
    ("temperature_start_c", None, "present for NVML rows"),
    ("gpu_energy_j", lambda r: 1.2 * 700 * r["duration_s"], "power limit"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_rows, min_size=1, max_size=5))
def test_generated_valid_frames_pass(rows: list[dict]) -> None:
    for i, row in enumerate(rows):
        row["run_id"] = f"cfg/r{i}"
    result = validate_table("runs", pd.DataFrame(rows))
    assert result.ok, result.failures
    assert len(result.valid) == len(rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_rows, st.sampled_from(MUTATIONS))
def test_mutated_rows_fail_naming_column_and_check(row: dict, mutation: tuple) -> None:
    column, bad, check = mutation
    good = dict(row, run_id="cfg/r0")
    broken = dict(row, run_id="cfg/r1")
    broken[column] = bad(row) if callable(bad) else bad
    if column == "gpu_energy_j":
        broken["energy_j"] = broken["gpu_energy_j"]
        broken.update(mean_power_w=broken["energy_j"] / broken["duration_s"],
                      energy_per_token_j=broken["energy_j"] / broken["output_tokens_total"],
                      energy_net_j=broken["energy_j"] - broken["idle_power_w"] * broken["duration_s"])
    result = validate_table("runs", pd.DataFrame([good, broken]), source="runs.parquet")
    assert list(result.valid["run_id"]) == ["cfg/r0"]
    assert list(result.quarantine["row"]) == [1]
    reason = result.quarantine["reason"].iloc[0]
    assert f"field {column}" in reason and check in reason and "runs.parquet: row 1" in reason


def test_missing_column_quarantines_whole_table() -> None:
    frame = pd.DataFrame([run_row()]).drop(columns=["energy_j"])
    result = validate_table("runs", frame, source="x.csv")
    assert result.valid.empty and len(result.quarantine) == 1
    assert "energy_j" in result.quarantine["reason"].iloc[0]


def test_unknown_column_is_refused() -> None:
    frame = pd.DataFrame([run_row(extra=1)])
    assert not validate_table("runs", frame).ok


def test_duplicate_primary_key_is_quarantined() -> None:
    frame = pd.DataFrame([run_row(), run_row()])
    result = validate_table("runs", frame)
    assert len(result.valid) == 1 and list(result.quarantine["row"]) == [1]


def test_random_weights_carry_no_measured_quality() -> None:
    contract = load_contract("configurations")
    row = {c.name: None for c in contract.columns}
    row.update(configuration_id="c", experiment="e", model="m", weights="random", architecture="llama",
               quantization="BF16", framework="transformers", dtype="bf16", engine_args_json="{}", workload="w",
               batch_size=1, input_tokens=64.0, output_tokens=32.0, n_runs=3, energy_per_token_j=1.0,
               energy_per_token_net_j=0.5, energy_per_request_j=32.0, tokens_per_s=10.0, mean_power_w=10.0,
               idle_power_w=1.0, ttft_p50_s=0.1, ttft_p90_s=0.2, e2e_p50_s=1.0, e2e_p90_s=1.2,
               energy_method="estimate", hardware_id="cpu", gpu_count=0, cpu_model="x",
               cost_per_1m_tokens_usd=0.04, co2_per_1m_tokens_g=111.0, quality_tasks="", source="watt-counts",
               quality_acc_mean=0.5)
    unsourced = validate_table("configurations", pd.DataFrame([row]))
    assert "quality on random weights names its source" in unsourced.quarantine["reason"].iloc[0]
    measured = validate_table("configurations", pd.DataFrame([{**row, "quality_source": "measured"}]))
    assert "random-weight rows carry no measured quality" in measured.quarantine["reason"].iloc[0]
    assert validate_table("configurations", pd.DataFrame([{**row, "quality_source": "derived"}])).ok


@pytest.mark.parametrize("table", TABLES)
def test_every_contract_builds_and_documents_every_column(table: str) -> None:
    contract = load_contract(table)
    assert contract.pandera_schema() is not None
    md = contract.markdown_table()
    for column in contract.columns:
        assert f"`{column.name}`" in md
        assert column.description
    assert set(contract.hf_features()) == set(contract.column_names)
    assert not math.isnan(contract.version)


def _partitions(folder: str) -> dict[str, dict[str, pd.DataFrame]]:
    from pathlib import Path

    from wattcounts_pipeline.measure.store import load_sweep

    tables = load_sweep(Path("data/measurements") / folder)
    keys = tables["runs"]["configuration_id"].unique()
    return {name: {k: tables[name][tables[name]["configuration_id"] == k] for k in keys}
            for name in ("runs", "requests")}


def _assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a.valid, b.valid)
    pd.testing.assert_frame_equal(a.quarantine, b.quarantine)
    pd.testing.assert_frame_equal(a.failures.astype(str), b.failures.astype(str))


@pytest.mark.parametrize("folder", ["h200-2026-12-02-llamacpp-call6", "h200x4-2026-11-26-s2-call3"])
def test_validate_partitions_gives_what_validate_table_gives_each_partition(folder: str) -> None:
    # Real recorded partitions, plus the failures a partition can carry: a bad row, an extra column
    # (another layout, condemned whole), a missing one, and an empty partition.
    from wattcounts_pipeline.core.validation import validate_partitions

    for name, frames in _partitions(folder).items():
        keys = list(frames)
        column = "energy_j" if name == "runs" else "ttft_s"
        bad = frames[keys[1]].copy()
        bad.iloc[0, bad.columns.get_loc(column)] = -1.0
        frames[keys[1]] = bad
        frames[keys[2]] = frames[keys[2]].assign(extra=1)
        frames[keys[3]] = frames[keys[3]].drop(columns=[column])
        frames["empty"] = frames[keys[0]].iloc[:0]
        sources = {k: f"measurements[{k}].{name}" for k in frames}
        together = validate_partitions(name, frames, sources)
        assert list(together) == list(frames)
        for key, frame in frames.items():
            _assert_same(together[key], validate_table(name, frame, sources[key]))
        assert len(together[keys[1]].quarantine) == 1 and "row 0, field " + column in together[keys[1]].quarantine["reason"][0]
        assert together[keys[2]].valid.empty and together[keys[3]].valid.empty and together[keys[0]].ok


def test_validate_partitions_catches_a_run_id_repeated_in_another_partition() -> None:
    from wattcounts_pipeline.core.validation import validate_partitions

    results = validate_partitions("runs", {"a": pd.DataFrame([run_row()]), "b": pd.DataFrame([run_row()])})
    assert results["a"].ok and list(results["b"].quarantine["row"]) == [0]
