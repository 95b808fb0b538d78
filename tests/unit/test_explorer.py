"""The explorer page (hub/explorer.py) built from the frozen release: every row embedded as the release has it,
hostile text kept inert, nothing fetched from anywhere. The browser half is tests/e2e/test_explorer_browser.py."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import TESTS
from wattcounts_pipeline.hub.explorer import (
    build_explorer,
    embed_json,
    load_release_rows,
    run_provenance,
    validated_recommendations,
)

RELEASE = TESTS / "fixtures" / "releases" / "v0.1.0"
HOSTILE = "</script><script>alert(1)</script>"


def _embedded(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page, re.DOTALL)
    assert match, "no embedded data"
    return json.loads(match.group(1))


def _hostile_release(tmp_path: Path) -> Path:
    """The frozen release with contributed-looking text in the columns the page shows."""
    release = tmp_path / "release"
    shutil.copytree(RELEASE, release)
    path = release / "data" / "configurations.parquet"
    configs = pd.read_parquet(path)
    configs.loc[0, "model"] = HOSTILE
    configs.loc[1, "hardware_id"] = '<img src=x onerror="alert(2)">'
    configs.loc[2, "engine_args_json"] = json.dumps({"note": "<!-- </SCRIPT> \u2028 & '"})
    configs.to_parquet(path, index=False)
    return release


def test_page_embeds_every_release_row(tmp_path):
    page = build_explorer(RELEASE, tmp_path / "site").read_text(encoding="utf-8")
    data = _embedded(page)
    configs = pd.read_parquet(RELEASE / "data" / "configurations.parquet")
    assert data["version"] == json.loads((RELEASE / "release.json").read_text())["version"] == "v0.1.0"
    assert "release v0.1.0" in page  # the title, before any script runs
    rows = {r["configuration_id"]: r for r in data["rows"]}
    assert set(rows) == set(configs["configuration_id"])
    for c in configs.itertuples(index=False):
        row = rows[c.configuration_id]
        assert row["energy_per_token_j"] == c.energy_per_token_j  # exact: JSON carries the double as written
        assert row["tokens_per_s"] == c.tokens_per_s
        assert (row["framework"], row["hardware_id"], row["workload"], row["weights"]) == (
            c.framework, c.hardware_id, c.workload, c.weights)
        quality = None if math.isnan(c.quality_acc_mean) else c.quality_acc_mean
        assert row["quality_acc_mean"] == quality
        assert row["quality_source"] is None  # schema v1 has no source: shown as unknown, never invented
    assert data["meta"]["configurations"] == len(configs)
    assert data["meta"]["by_weights"] == configs["weights"].value_counts().to_dict()
    assert data["recommendations"] is None  # the form says: measured rows only


def test_provenance_window_lengths_and_repeat_interval():
    runs = pd.read_parquet(RELEASE / "data" / "runs.parquet")
    facts = run_provenance(runs)
    _, rows = load_release_rows(RELEASE)
    for row in rows:
        mine = runs[runs["configuration_id"] == row["configuration_id"]].sort_values("repetition")
        assert row["window_s_min"] == pytest.approx(mine["duration_s"].min())
        assert row["window_s_max"] == pytest.approx(mine["duration_s"].max())
        assert row["window_s_median"] == pytest.approx(mine["duration_s"].median())
        starts = pd.to_datetime(mine["started_at"], utc=True)
        assert row["repeat_interval_s"] == pytest.approx(starts.diff().dt.total_seconds().median())
        assert row["repeat_interval_s"] == pytest.approx(60.0)  # the frozen runs start a minute apart
    assert facts.loc[rows[0]["configuration_id"], "energy_flags"] == ""
    single = run_provenance(runs.groupby("configuration_id").head(1))
    assert single["repeat_interval_s"].isna().all()  # one repetition: no interval, not a zero


def test_hostile_text_stays_text(tmp_path):
    page = build_explorer(_hostile_release(tmp_path), tmp_path / "site").read_text(encoding="utf-8")
    assert HOSTILE not in page
    assert "<script>alert" not in page
    assert "<img" not in page
    assert "<!--" not in page
    assert page.lower().count("</script>") == 2  # the data element's own end and the code's: nothing else
    assert page.count("<script") == 2
    rows = {r["model"] for r in _embedded(page)["rows"]}
    assert HOSTILE in rows  # JSON.parse gives the exact text back; the script sets it with textContent only
    script = re.search(r"<script>(.*?)</script>", page, re.DOTALL).group(1)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


def test_embed_json_escapes_every_breakout():
    text = embed_json({"a": "</script><!-- & \u2028\u2029 >"})
    assert not set("<>&") & set(text)
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028\u2029 >"}


def test_no_external_urls_and_csp_allows_only_the_inline_code(tmp_path):
    page = build_explorer(RELEASE, tmp_path / "site").read_text(encoding="utf-8")
    urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>)]*", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name, never fetched
    assert not re.search(r"<(?:link|img|iframe|object|embed)\b", page, re.IGNORECASE)
    assert not re.search(r"\b(?:src|href)\s*=", page.split('id="explorer-data"')[0], re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    assert not re.search(r"\bfetch\(|XMLHttpRequest|WebSocket|EventSource|sendBeacon", page)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp  # the browser runs it, nothing else


def test_space_readme_and_deterministic_output(tmp_path):
    first = build_explorer(RELEASE, tmp_path / "a").read_bytes()
    second = build_explorer(RELEASE, tmp_path / "b").read_bytes()
    assert first == second  # same release, same page: no timestamps
    card = (tmp_path / "a" / "README.md").read_text(encoding="utf-8")
    front = card.split("---")[1]
    assert "sdk: static" in front and "app_file: index.html" in front


def test_recommendations_are_checked_and_embedded(tmp_path):
    recs = [{"hardware": "H200", "scenario": "chat", "source": "predictor v0.1.0 (predicted)",
             "best": {"configuration_id": "x", "energy_per_token_j": 0.12, "quality_acc_mean": float("nan")},
             "warnings": [HOSTILE]},
            {"hardware": "H200", "scenario": "rag", "source": "predictor", "best": None, "unmet": "TPOT"}]
    page = build_explorer(RELEASE, tmp_path / "site", recommendations=recs).read_text(encoding="utf-8")
    embedded = _embedded(page)["recommendations"]
    assert embedded[0]["best"] == {"configuration_id": "x", "energy_per_token_j": 0.12, "quality_acc_mean": None}
    assert embedded[0]["warnings"] == [HOSTILE] and HOSTILE not in page
    assert embedded[1]["best"] is None and embedded[1]["unmet"] == "TPOT"
    for bad in ([{"hardware": "H200", "scenario": "chat"}],  # no source: an answer must say where it came from
                [{"hardware": "H200", "scenario": "chat", "source": "s", "best": {"x": [1, 2]}}],
                [{"hardware": "H200", "scenario": "chat", "source": "s", "warnings": "one string"}]):
        with pytest.raises(ValueError):
            validated_recommendations(bad)
    with pytest.raises(TypeError):
        validated_recommendations(["not a mapping"])


def test_a_table_without_the_needed_columns_is_refused(tmp_path):
    release = tmp_path / "release"
    shutil.copytree(RELEASE, release)
    path = release / "data" / "configurations.parquet"
    pd.read_parquet(path).drop(columns=["energy_per_token_j"]).to_parquet(path, index=False)
    with pytest.raises(ValueError, match="energy_per_token_j"):
        build_explorer(release, tmp_path / "site")
