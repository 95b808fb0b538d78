"""The vectorised aggregation gives exactly what the straightforward per-configuration loops give."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers.rows import run_row
from wattcounts_pipeline import aggregate as agg
from wattcounts_pipeline.core.validation import validate_table


def reference_energy_per_token_by_gpu(runs: pd.DataFrame) -> pd.Series:
    """One configuration at a time, as the pipeline computed it before it was vectorised."""
    if "gpu_energy_j_by_gpu" not in runs:
        return pd.Series(None, index=runs["configuration_id"].unique(), dtype=object)
    result = {}
    for key, group in runs.groupby("configuration_id", sort=True):
        has = group["gpu_energy_j_by_gpu"].map(lambda v: isinstance(v, str))
        lists = [json.loads(v) for v in group.loc[has, "gpu_energy_j_by_gpu"]]
        if not lists or len({len(x) for x in lists}) != 1:
            result[key] = None
            continue
        per_token = np.array(lists) / group.loc[has, "output_tokens_total"].to_numpy()[:, None]
        result[key] = json.dumps([round(float(v), 6) for v in per_token.mean(axis=0)])
    return pd.Series(result, dtype=object)


def reference_quality_columns(out: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """`_quality_for` row by row, as before."""
    return out.apply(lambda row: agg._quality_for(row, quality), axis=1, result_type="expand")


def reference_aggregate(monkeypatch: pytest.MonkeyPatch, *args: pd.DataFrame) -> pd.DataFrame:
    with monkeypatch.context() as m:
        m.setattr(agg, "_energy_per_token_by_gpu", reference_energy_per_token_by_gpu)
        m.setattr(agg, "_quality_columns", reference_quality_columns)
        return agg.aggregate(*args)


def _per_gpu_text(rng: np.random.Generator, width: int) -> str:
    values = rng.uniform(50, 5000, width)
    if rng.random() < 0.3:
        values = np.round(values)  # integers in the JSON, as some recorders write them
        return json.dumps([int(v) for v in values])
    return json.dumps([float(v) for v in values])


def random_tables(seed: int, configs: int = 80) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A few hundred validated run rows: groups of 1-12 runs (several of one), per-GPU lists of 1, 2 and 4
    GPUs, groups with missing or mixed-width lists, NaN prefill, CPU rows without temperatures, None
    parallelism."""
    rng = np.random.default_rng(seed)
    rows, requests = [], []
    models = [("llama-3.1-8b", "BF16", "transformers", "real"), ("llama-3.1-8b", "Q4_K_M", "llamacpp", "real"),
              ("qwen2.5-7b", "BF16", "transformers", "random"), ("gemma-3-270m", "F32", "transformers", "real")]
    for c in range(configs):
        n = 1 if c % 5 == 0 else int(rng.integers(2, 13))
        model, quant, framework, weights = models[c % len(models)]
        width = [1, 2, 4][c % 3]
        nvml = c % 6 != 5  # CPU-estimate rows carry no temperatures (NaN through the aggregation)
        kind = c % 7  # 0: no lists, 1: mixed widths, 2: some rows without, else: all rows with lists
        cid = f"cfg-{c:04d}-{rng.integers(1e6):06d}"
        for r in range(n):
            tokens, duration = int(rng.integers(16, 4000)), rng.uniform(0.5, 60)
            energy = rng.uniform(100, 650) * duration
            by_gpu = None if kind == 0 or (kind == 2 and r % 2) else \
                _per_gpu_text(rng, width + (r % 2 if kind == 1 else 0))
            prefill = None if rng.random() < 0.4 else rng.uniform(1, 50)
            row = run_row(nvml=nvml, energy_j=energy, output_tokens=tokens, duration_s=duration, repetition=r,
                          run_id=f"{cid}/r{r}", configuration_id=cid, model=model, quantization=quant,
                          framework=framework, weights=weights, gpu_energy_j_by_gpu=by_gpu,
                          prefill_energy_j=prefill,
                          decode_energy_per_token_j=None if prefill is None else (energy - prefill) / tokens,
                          parallelism=None if c % 4 == 0 else "none",
                          **({"temperature_end_c": float(rng.uniform(30, 80))} if nvml else {}),
                          batch_size=int(1 + c % 8))
            rows.append(row)
        for _ in range(int(rng.integers(1, 20))):
            e2e = rng.uniform(0.1, 30)
            requests.append({"configuration_id": cid, "ttft_s": e2e * rng.uniform(0, 1),
                             "tpot_s": np.nan if rng.random() < 0.1 else rng.uniform(0.001, 0.1), "e2e_s": e2e})
    quality = pd.DataFrame([{"model": m, "quantization": q, "framework": f, "task": t, "metric": metric,
                             "value": np.nan if rng.random() < 0.1 else rng.uniform(0.2, 0.9)}
                            for m, q, f, _ in models[:2] for t in ("wc_arc_easy", "wc_hellaswag", "wikitext")
                            for metric in ("acc", "acc_norm", "word_perplexity")])
    result = validate_table("runs", pd.DataFrame(rows))
    assert result.ok, result.failures
    return result.valid, pd.DataFrame(requests), quality


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregate_equals_reference(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    runs, requests, quality = random_tables(seed)
    assert 300 <= len(runs) <= 700 and (runs.groupby("configuration_id").size() == 1).sum() >= 10
    new = agg.aggregate(runs, requests, quality)
    ref = reference_aggregate(monkeypatch, runs, requests, quality)
    pd.testing.assert_frame_equal(new, ref, check_exact=True)
    assert new["energy_per_token_j_by_gpu"].notna().any() and new["energy_per_token_j_by_gpu"].isna().any()
    assert new["quality_acc_mean"].notna().any()
    # without quality, with the per-GPU column absent altogether, and with the rows shuffled
    for args in ((runs, requests, pd.DataFrame()), (runs.drop(columns="gpu_energy_j_by_gpu"), requests, quality),
                 (runs.sample(frac=1, random_state=seed), requests, quality)):
        pd.testing.assert_frame_equal(agg.aggregate(*args), reference_aggregate(monkeypatch, *args),
                                      check_exact=True)


def test_per_gpu_means_match_numpy_mean_bit_for_bit() -> None:
    """Long groups, shuffled rows, empty lists and an object column holding NaN and None as well as text."""
    rng = np.random.default_rng(7)
    sizes = [1, 2, 7, 8, 9, 16, 17, 127, 128, 129, 300, 1000]
    frames = []
    for width in (1, 2, 3):
        for i, n in enumerate(sizes):
            frames.append(pd.DataFrame({
                "configuration_id": f"w{width}-{i:02d}",
                "output_tokens_total": rng.integers(1, 10_000, n),
                "gpu_energy_j_by_gpu": [json.dumps(list(rng.uniform(0, 1e4, width) * 10 ** rng.uniform(-3, 3)))
                                        for _ in range(n)]}))
    frames.append(pd.DataFrame({"configuration_id": "empty-lists", "output_tokens_total": [5, 6],
                                "gpu_energy_j_by_gpu": ["[]", "[]"]}))
    frames.append(pd.DataFrame({"configuration_id": "object-column", "output_tokens_total": [5, 6, 7],
                                "gpu_energy_j_by_gpu": ["[1.5, 2]", np.nan, None]}))
    runs = pd.concat(frames, ignore_index=True).sample(frac=1, random_state=1)
    new = agg._energy_per_token_by_gpu(runs)
    ref = reference_energy_per_token_by_gpu(runs)
    pd.testing.assert_series_equal(new, ref, check_exact=True)


@pytest.mark.parametrize("width", [1, 2, 3, 8])
def test_group_means_are_numpy_means_unrounded(width: int) -> None:
    """Before rounding: numpy sums a one-column mean pairwise and wider ones row by row; so must we."""
    rng = np.random.default_rng(width)
    sizes = np.array([1, 2, 7, 8, 9, 9, 16, 17, 100, 100, 100, 127, 128, 129, 255, 300, 1000, 4097, 20000])
    groups = np.repeat(np.arange(len(sizes)), sizes)
    values = rng.uniform(0, 1, (len(groups), width)) * 10 ** rng.uniform(-6, 6, (len(groups), 1))
    firsts, means = agg._row_means_by_group(values, groups)
    assert list(firsts) == list(range(len(sizes)))
    for g in firsts:
        expected = values[groups == g].mean(axis=0)
        assert means[g].tobytes() == expected.tobytes(), (width, sizes[g])
