"""benchmarks/repeatability.py: configurations recorded in two calls, and how far their means differ."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import repeatability
from wattcounts_pipeline.measure.sweep import _append


def _call(root: Path, name: str, rows: dict[str, tuple[float, float, float]], card: str | None) -> None:
    """A sweep folder whose configurations have (J/token, tokens/s, window s) in each of two repetitions."""
    folder = root / name
    folder.mkdir(parents=True)
    _append(folder / "runs.jsonl", pd.DataFrame([
        {"run_id": f"{cid}/r{rep}", "configuration_id": cid, "energy_per_token_j": j * (1 + 0.01 * rep),
         "tokens_per_s": t, "duration_s": w, "gpu_uuids": card}
        for cid, (j, t, w) in rows.items() for rep in range(2)]))


def test_pairs_medians_and_cards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _call(tmp_path, "call1", {"a": (1.0, 100.0, 11.0), "b": (2.0, 50.0, 11.0), "only1": (1.0, 1.0, 11.0)}, "GPU-x")
    _call(tmp_path, "call2", {"a": (1.1, 100.0, 11.0), "b": (2.0, 40.0, 4.0)}, "GPU-x")
    _call(tmp_path, "call3", {"b": (2.2, 50.0, 12.0)}, "GPU-y")
    out = tmp_path / "rep.json"
    assert repeatability.main([str(tmp_path), "--json", str(out)]) == 0
    table = pd.DataFrame(json.loads(out.read_text())["configurations"]).set_index("configuration_id")
    assert set(table.index) == {"a", "b"}  # "only1" was measured once
    assert table.loc["a", "energy_per_token_rel"] == pytest.approx(0.1)
    assert table.loc["a", "same_card"] and table.loc["a", "long_windows"]
    assert table.loc["b", "energy_per_token_rel"] == pytest.approx(0.1)  # 2.2 vs 2.0 over three calls
    assert table.loc["b", "tokens_per_s_rel"] == pytest.approx(0.25)
    assert not table.loc["b", "same_card"] and not table.loc["b", "long_windows"]  # call2's 4 s windows
    summary = json.loads(out.read_text())["summary"]
    assert summary["all"]["configurations"] == 2 and summary["same_card"]["configurations"] == 1
    assert summary["long_windows"]["energy_per_token_median_pct"] == pytest.approx(10.0)
    assert '"configurations": 2' in capsys.readouterr().out


def test_nothing_repeated_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _call(tmp_path, "call1", {"a": (1.0, 100.0, 11.0)}, None)
    assert repeatability.main([str(tmp_path)]) == 1
    assert "no configuration was measured in two calls" in capsys.readouterr().out


def test_protocol_pairs_short_windows_with_the_long_window_spec(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # the same spec, once with 4 s windows (old protocol) and once with >= 10 s ones: two configuration ids
    _call(tmp_path, "old", {"m-transformers-bf16-decode-128-256-b2-0123abcd": (1.2, 90.0, 4.0),
                            "m-transformers-bf16-decode-128-256-b8-0123abce": (1.0, 90.0, 4.0)}, "GPU-x")
    _call(tmp_path, "new", {"m-transformers-bf16-decode-128-256-b2-89abcdef": (1.0, 100.0, 12.0)}, "GPU-y")
    pairs = repeatability.protocol_pairs(repeatability.per_call_means(tmp_path))
    assert len(pairs) == 1  # b8 has no long-window call
    row = pairs.iloc[0]
    assert row["spec"] == "m-transformers-bf16-decode-128-256-b2" and row["call"] == "old"
    assert row["energy_per_token_rel"] == pytest.approx(0.2) and row["tokens_per_s_rel"] == pytest.approx(-0.1)
