"""Quality provenance: published and derived scores say what they are, and measured ones win."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import yaml

from tests.helpers.rows import run_row
from wattcounts_pipeline import paths
from wattcounts_pipeline.aggregate import aggregate
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.quality import derive
from wattcounts_pipeline.quality.derive import PROVENANCE_KEY, release_quality


def _runs(*configs: tuple[str, str, str, str, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and requests of (model, quantization, framework, weights, batch size) configurations, one run each."""
    runs, requests = [], []
    for model, quantization, framework, weights, batch in configs:
        cid = f"{model}-{quantization}-{framework}-{weights}-b{batch}"
        runs.append(run_row(model=model, quantization=quantization, framework=framework, weights=weights,
                            batch_size=batch, configuration_id=cid, run_id=f"{cid}/r0"))
        requests.append({"configuration_id": cid, "run_id": f"{cid}/r0", "ttft_s": 0.1, "tpot_s": 0.01, "e2e_s": 1.0})
    return pd.DataFrame(runs), pd.DataFrame(requests)


def _measured(model: str, quantization: str, framework: str, acc: float) -> pd.DataFrame:
    """What one quality_scores partition holds: lm-eval rows of one model, validated as the asset stores them."""
    rows = [{"model": model, "model_revision": "sha256:abc", "quantization": quantization, "framework": framework,
             "task": task, "task_version": "1.0", "num_fewshot": 0, "limit": 50, "metric": "acc", "value": acc,
             "stderr": 0.05, "n_samples": 50, "lm_eval_version": "0.4.9", "evaluated_at": "2026-11-30T10:00:00+00:00"}
            for task in ("wc_arc_easy", "wc_piqa")]
    result = validate_table("quality", pd.DataFrame(rows))
    assert result.ok, result.failures
    return result.valid


def test_reference_entries_cite_their_sources_and_name_real_architectures() -> None:
    architectures = {p.name for p in (paths.MODELS_DIR / "configs").iterdir()}
    published = derive.published_scores()
    assert len(published) >= 20 and set(published["model"]) <= architectures
    assert published["citation"].str.contains("read 2026-").all()
    assert published["value"].between(0, 1).all()
    for r in derive.retentions():
        assert r.kind in {"task_average", "token_proxy"} and 0.9 < r.retention <= 1.01 and r.uncertainty > 0
        assert "read 2026-" in r.citation and r.citation.startswith(("llama.cpp", "Neural Magic", "This project"))


def test_release_quality_validates_and_derived_rows_say_how() -> None:
    runs, _ = _runs(("llama-3.1-8b", "Q4_K_M", "llamacpp-server", "random", 1),
                    ("llama-3.2-1b", "FP8", "transformers", "random", 8),
                    ("llama-3.1-8b", "BF16", "transformers", "random", 1))
    quality = release_quality(load_contract("quality").empty_frame(), runs)
    result = validate_table("quality", quality)
    assert result.ok, result.failures
    derived = quality[quality["source"] == "derived"]
    stand_in = derived["quantization"] == "BF16"  # bf16 of architectures with no authors' score, always in the release
    assert set(derived.loc[stand_in, "model"]) == {"mistral-7b-v0.3", "mixtral-8x7b"}
    derived = derived[~stand_in]
    assert set(derived["quantization"]) == {"Q4_K_M", "FP8"}  # bf16 needs no derivation: it is the published row
    assert derived["recipe"].str.contains("retention").all() and derived["citation"].str.contains(" | ").all()
    assert (derived["value_ci95_low"] < derived["value"]).all() and (derived["value"] < derived["value_ci95_high"]).all()
    assert derived["lm_eval_version"].isna().all() and derived["evaluated_at"].isna().all()


def test_interval_widens_for_a_format_studied_on_another_model() -> None:
    score = derive.published_scores().iloc[0].to_dict()  # llama-3.1-8b MMLU 5-shot
    fp8 = derive.retention_for("FP8", "llama-3.1-8b")
    assert fp8 is not None and fp8.studied_architecture == "llama-3.1-8b"
    other = dataclasses.replace(fp8, studied_architecture="llama-3.1-70b")
    same_row, other_row = (derive.derive_row(score, "FP8", "vllm", r) for r in (fp8, other))
    def width(row: dict) -> float:
        return row["value_ci95_high"] - row["value_ci95_low"]

    assert width(other_row) > width(same_row)
    assert "studied on llama-3.1-70b" in other_row["recipe"] and "studied on" not in same_row["recipe"]


def test_a_derived_value_is_never_presented_as_measured() -> None:
    runs, requests = _runs(("llama-3.1-8b", "Q4_K_M", "llamacpp", "real", 1),
                           ("llama-3.1-8b", "Q4_K_M", "llamacpp", "random", 1),
                           ("llama-3.1-8b", "Q8_0", "llamacpp", "real", 1))
    measured = _measured("llama-3.1-8b", "Q4_K_M", "llamacpp", acc=0.61)
    quality = release_quality(measured, runs)
    configs = aggregate(runs, requests, quality).set_index("configuration_id")
    real = configs.loc["llama-3.1-8b-Q4_K_M-llamacpp-real-b1"]
    assert real["quality_source"] == "measured" and real["quality_acc_mean"] == pytest.approx(0.61)
    random = configs.loc["llama-3.1-8b-Q4_K_M-llamacpp-random-b1"]  # same format, random weights: never measured
    assert random["quality_source"] == "derived" and random["quality_tasks"] == "arc_challenge,mmlu"
    q8 = configs.loc["llama-3.1-8b-Q8_0-llamacpp-real-b1"]  # real weights but never evaluated here: derived
    assert q8["quality_source"] == "derived"
    assert set(quality.loc[quality["source"] == "measured", "task"]) == {"wc_arc_easy", "wc_piqa"}  # only lm-eval's
    assert validate_table("configurations", configs.reset_index()).ok
    # and the contract refuses a random-weight row that claims a measured score
    forged = configs.reset_index().assign(quality_source="measured")
    failures = validate_table("configurations", forged).failures
    assert "random-weight rows carry no measured quality" in set(failures["check"])


def test_real_weights_at_two_batch_sizes_give_one_set_of_quality_keys() -> None:
    """Issue 21: quality_scores is partitioned like the runs, so a real-weight model measured at batch 1 and 8 has
    two partitions holding the same (shared, cached) evaluation; the release must hold it once."""
    runs, requests = _runs(("gemma-3-270m", "Q4_K_M", "llamacpp", "real", 1),
                           ("gemma-3-270m", "Q4_K_M", "llamacpp", "real", 8))
    partition = _measured("gemma-3-270m", "Q4_K_M", "llamacpp", acc=0.4)
    concatenated = pd.concat([partition, partition], ignore_index=True)  # what the IO manager hands the release
    assert concatenated.duplicated(PROVENANCE_KEY).any()  # the duplicate keys are real upstream ...
    quality = release_quality(concatenated, runs)
    assert not quality.duplicated(PROVENANCE_KEY).any()  # ... and gone from the release
    assert (quality["source"] == "measured").sum() == len(partition)
    contract = load_contract("quality")
    contract.pandera_schema().validate(contract.conform(quality), lazy=True)  # the release's own check
    configs = aggregate(runs, requests, quality)
    assert configs["quality_source"].tolist() == ["measured", "measured"]
    assert configs["quality_acc_mean"].tolist() == pytest.approx([0.4, 0.4])


def _width(row: dict) -> float:
    return row["value_ci95_high"] - row["value_ci95_low"]


def test_stand_in_widening_is_the_largest_gap_its_checks_show() -> None:
    """The lab and version terms are computed from the YAML's checks, not typed in: recompute them here."""
    doc = yaml.safe_load((derive.REFERENCE_DIR / "published_scores.yaml").read_text(encoding="utf-8"))
    sources = set(doc["sources"])
    for kind in ("lab", "version"):
        checks = doc[f"{kind}_checks"]
        assert {c["source_a"] for c in checks} | {c["source_b"] for c in checks} <= sources
        for task in ("mmlu", "arc_challenge", "hellaswag"):
            gaps = [abs(c["value_a"] - c["value_b"]) / min(c["value_a"], c["value_b"]) for c in checks
                    if c["task"] == task]
            assert derive.widening(kind)[task] == pytest.approx(max(gaps))
    assert derive.widening("lab")["arc_challenge"] > 0.3  # Meta's and Qwen's ARC-C of one Llama 3 differ that much
    stand = {(b.row["model"], b.row["task"]): b for b in derive.stand_ins()}
    assert {m for m, _ in stand} == {"mistral-7b-v0.3", "mixtral-8x7b"}
    assert not {m for m, _ in stand} & set(derive.published_scores()["model"])  # authors' scores win
    mistral, mixtral = stand["mistral-7b-v0.3", "mmlu"], stand["mixtral-8x7b", "mmlu"]
    assert set(mistral.terms) == {"scored by Qwen Team, not the authors", "checkpoint version not stated"}
    assert set(mixtral.terms) == {"scored by Qwen Team, not the authors"}  # one base Mixtral exists: version known
    for base in stand.values():
        row = derive.stand_in_row(base)
        assert row["source"] == "derived" and row["stderr"] is None and "Qwen" in row["citation"]
        assert "scored by Qwen Team" in row["recipe"] and "published" not in row["recipe"]
        relative = math.sqrt(sum(t * t for t in base.terms.values()))
        assert _width(row) >= 2 * row["value"] * relative * 0.999 or row["value_ci95_high"] == 1.0
    rel = {k: _width(derive.stand_in_row(b)) / b.row["value"] for k, b in stand.items()}
    assert rel["mistral-7b-v0.3", "mmlu"] > rel["mixtral-8x7b", "mmlu"]  # the unstated version widens it


def test_an_architecture_without_authors_scores_gets_derived_quality_in_every_format() -> None:
    runs, requests = _runs(("mistral-7b-v0.3", "BF16", "transformers", "random", 1),
                           ("mistral-7b-v0.3", "Q4_K_M", "llamacpp", "random", 1),
                           ("mistral-7b-v0.3", "IQ4_XS", "llamacpp-server", "random", 8),
                           ("mixtral-8x7b", "BF16", "transformers", "random", 1),
                           ("mistral-7b-v0.3", "bnb-nf4", "transformers", "random", 1))
    quality = release_quality(load_contract("quality").empty_frame(), runs)
    assert validate_table("quality", quality).ok
    configs = aggregate(runs, requests, quality).set_index("configuration_id")
    assert validate_table("configurations", configs.reset_index()).ok
    assert (configs["quality_source"] == "derived").all()  # never published, never measured
    assert (configs["quality_tasks"] == "arc_challenge,hellaswag,mmlu").all()
    nf4 = quality[(quality["model"] == "mistral-7b-v0.3") & (quality["quantization"] == "bnb-nf4")]
    assert len(nf4) and nf4["recipe"].str.contains("studied on gemma-3-270m").all()  # this project's NF4 study
    q4 = quality[(quality["model"] == "mistral-7b-v0.3") & (quality["quantization"] == "Q4_K_M")]
    assert q4["recipe"].str.contains("stand-in scored by Qwen Team").all()
    assert q4["recipe"].str.contains("checkpoint version not stated").all()  # the stand-in's terms carry on
    bf16 = configs.loc["mistral-7b-v0.3-BF16-transformers-random-b1"]
    q4c = configs.loc["mistral-7b-v0.3-Q4_K_M-llamacpp-random-b1"]
    assert q4c["quality_acc_mean"] < bf16["quality_acc_mean"]
    assert (q4c["quality_acc_ci95_high"] - q4c["quality_acc_ci95_low"]) > (bf16["quality_acc_ci95_high"]
                                                                          - bf16["quality_acc_ci95_low"])


def test_iq4_xs_without_an_imatrix_widens_for_the_imatrix_study() -> None:
    iq4 = derive.retention_for("IQ4_XS", "qwen2.5-7b")
    assert iq4 is not None and iq4.imatrix_gap > 0
    q4ks = derive.retention_for("Q4_K_S", "qwen2.5-7b")
    assert q4ks is not None and iq4.retention < 1 - 0.00668  # the listed imatrix loss, made worse, never flattered
    score = derive.published_scores().iloc[0].to_dict()
    row = derive.derive_row(score, "IQ4_XS", "llamacpp", iq4)
    no_gap = derive.derive_row(score, "IQ4_XS", "llamacpp", dataclasses.replace(iq4, imatrix_gap=0.0))
    assert "studied with an importance matrix, quantized here without" in row["recipe"]
    assert _width(row) > _width(no_gap) and row["value"] == no_gap["value"]


def test_a_measured_label_on_a_derived_row_is_refused() -> None:
    runs, _ = _runs(("llama-3.1-8b", "Q4_K_M", "llamacpp", "random", 1))
    quality = release_quality(load_contract("quality").empty_frame(), runs)
    derived = quality[(quality["source"] == "derived") & (quality["model"] == "llama-3.1-8b")]
    forged = derived.assign(source="measured", lm_eval_version="0.4.9", evaluated_at="2026-12-05T00:00:00+00:00",
                            stderr=0.01)
    failures = validate_table("quality", forged).failures
    assert "absent for measured rows (a recipe means derived)" in set(failures["check"])
    assert (quality.loc[quality["source"] != "derived", "recipe"].isna()).all()
    assert (quality.loc[quality["source"] == "derived", "recipe"].notna()).all()
