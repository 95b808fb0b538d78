"""bitsandbytes NF4's retention is measured by this project (benchmarks/gemma_bnb_quality.py on Gemma 3 270M):
the yaml entry must load, carry to the 7-8B bnb-nf4 rows as a derived, transfer-widened value, and agree with the
benchmark's JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest

from tests.helpers.rows import run_row
from wattcounts_pipeline import paths
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.quality import derive

BENCHMARK = paths.REPO_ROOT / "benchmarks" / "results" / "gemma_bnb_quality.json"


def _width(row: dict) -> float:
    return row["value_ci95_high"] - row["value_ci95_low"]


def _nf4() -> derive.Retention:
    nf4 = derive.retention_for("bnb-nf4", "llama-3.1-8b")
    assert nf4 is not None
    return nf4


def test_the_nf4_entry_loads_as_a_measurement_of_this_project() -> None:
    nf4 = _nf4()
    assert nf4.format == "NF4" and "bnb-nf4" in nf4.aliases
    assert nf4.studied_architecture == "gemma-3-270m" and nf4.kind == "task_average"
    assert nf4.measured_here and "benchmarks/results/gemma_bnb_quality.json" in nf4.citation
    assert nf4.studied_tasks == {("wc_arc_easy", 0), ("wc_piqa", 0)}
    assert nf4.uncertainty >= max(derive.TRANSFER_MIN_REL, derive.SHOT_MISMATCH_REL)
    assert derive.retention_for("BNB-NF4", "qwen2.5-7b") == nf4  # labels match case-insensitively


def test_a_bnb_nf4_configuration_gets_a_derived_value_wider_than_the_study() -> None:
    nf4 = _nf4()
    score = derive.published_scores().iloc[0].to_dict()  # llama-3.1-8b MMLU 5-shot
    row = derive.derive_row(score, "bnb-nf4", "transformers", nf4)
    assert row["source"] == "derived" and row["stderr"] is None
    assert row["value"] == pytest.approx(score["value"] * nf4.retention)
    assert "studied on gemma-3-270m" in row["recipe"] and "measured by this project" in row["recipe"]
    assert "task/n-shot not in the study" in row["recipe"]  # the study is 0-shot ARC-e/PIQA, not MMLU 5-shot
    # wider than the study's own interval carried over alone (same model, task covered: no extra terms)
    own = dataclasses.replace(nf4, studied_architecture="llama-3.1-8b",
                              studied_tasks=frozenset({(score["task"], score["num_fewshot"])}))
    own_row = derive.derive_row(score, "bnb-nf4", "transformers", own)
    assert _width(row) > _width(own_row) and "studied on" not in own_row["recipe"]
    relative = math.sqrt(nf4.uncertainty**2 + max(abs(1 - nf4.retention), derive.TRANSFER_MIN_REL)**2
                         + derive.SHOT_MISMATCH_REL**2)
    assert _width(row) >= 2 * row["value"] * relative * 0.999 or row["value_ci95_high"] == 1.0


def test_release_quality_derives_bnb_nf4_and_never_labels_it_measured() -> None:
    cid = "qwen2.5-7b-bnb-nf4-transformers"
    runs = pd.DataFrame([run_row(model="qwen2.5-7b", quantization="bnb-nf4", framework="transformers",
                                 weights="random", batch_size=1, configuration_id=cid, run_id=f"{cid}/r0")])
    quality = derive.release_quality(load_contract("quality").empty_frame(), runs)
    assert validate_table("quality", quality).ok
    nf4 = quality[quality["quantization"] == "bnb-nf4"]
    assert len(nf4) > 0 and (nf4["source"] == "derived").all() and nf4["recipe"].notna().all()
    assert nf4["recipe"].str.contains("measured by this project").all()


def test_the_yaml_retention_is_the_benchmarks_measurement() -> None:
    """The yaml's numbers are the benchmark's, so neither can drift from the other."""
    state = json.loads(BENCHMARK.read_text(encoding="utf-8"))
    assert state.get("finished") and state["limit"] >= 200
    measured = state["retention"]
    nf4 = _nf4()
    assert nf4.retention == pytest.approx(measured["retention"], abs=5e-6)
    floor = max(derive.TRANSFER_MIN_REL, derive.SHOT_MISMATCH_REL)
    assert nf4.uncertainty == pytest.approx(max(measured["relative_half_width"], floor), abs=5e-6)
    # and the JSON's retention is its own per-item results: task-average accuracy of NF4 over the parent's
    acc = state["accuracy"]
    averages = {}
    for label in ("parent", "bnb-nf4"):
        tasks = acc[label]["tasks"]
        assert {(t, 0) for t in tasks} == nf4.studied_tasks
        per_task = [c.count("1") / len(c) for c in (tasks[t]["correct"] for t in state["tasks"])]
        assert all(len(tasks[t]["correct"]) == state["limit"] for t in state["tasks"])
        averages[label] = sum(per_task) / len(per_task)
    assert measured["retention"] == pytest.approx(averages["bnb-nf4"] / averages["parent"], rel=1e-9)
