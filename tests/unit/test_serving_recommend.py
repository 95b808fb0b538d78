"""`wattcounts recommend` answering from measured load curves: interpolated, extrapolated with the reason said,
the predictor only for setups without a curve, and bad curve rows named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.serving_rows import chat_curve_rows
from wattcounts_pipeline.cli import main


@pytest.fixture()
def curves(tmp_path: Path) -> Path:
    path = tmp_path / "curves.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chat_curve_rows()))
    return path


def test_recommend_answers_30_users_from_the_curve_and_says_it_extrapolates(curves: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recommend", "--hardware", "cpu-x86-server", "--scenario", "chat", "--users", "30",
                 "--curves", str(curves), "--min-quality", "0"])
    out = capsys.readouterr().out
    assert "From measured load curves at 512 in / 256 out tokens, concurrency 30" in out
    assert "extrapolated beyond the highest measured load (4 users)" in out and "Little's law" in out
    assert "200 J/request" in out and "SLO not met" in out
    assert "From the predictor (setups without a measured curve):" in out
    assert code in (0, 1)  # the predictor's answer for other setups decides when the curve misses the SLO


def test_recommend_json_says_where_the_answer_came_from(curves: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["recommend", "--hardware", "cpu-x86-server", "--scenario", "chat", "--users", "3", "--curves", str(curves),
          "--min-quality", "0", "--json"])
    doc = json.loads(capsys.readouterr().out)
    (answer,) = doc["measured_curves"]
    assert answer["how"] == "interpolated" and answer["load"] == 3.0 and doc["scenario"]["concurrency"] == 3
    assert answer["energy_per_request_j"] == pytest.approx(200.0)
    assert doc["answer_source"] == "predictor"  # the curve misses the 1 s TTFT SLO at 3 users


def test_bad_curve_rows_are_named(curves: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [json.loads(line) for line in curves.read_text().splitlines()]
    rows[1]["energy_per_request_j"] = -1.0
    curves.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["recommend", "--hardware", "cpu-x86-server", "--users", "3", "--curves", str(curves)]) == 2
    err = capsys.readouterr().err
    assert "curves.jsonl" in err and "row 1" in err and "energy_per_request_j" in err


def test_users_and_rate_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["recommend", "--hardware", "cpu-x86-server", "--users", "3", "--rate", "1"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_release_with_load_points_has_their_config_figure_and_card_section(tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    from tests.helpers.model_fixtures import make_configurations
    from wattcounts_pipeline.hub.release import build_release

    folder = build_release({"configurations": make_configurations(12), "load_points": pd.DataFrame(chat_curve_rows())},
                           "0.1.0", tmp_path)
    card = (folder / "README.md").read_text()
    assert "## Serving load curves" in card and "figures/load_curves.png" in card and "1–4 users" in card
    assert (folder / "figures" / "load_curves.png").read_bytes().startswith(b"\x89PNG")
    points = datasets.load_dataset(str(folder), "load_points", split="train")
    assert len(points) == 3 and "energy_per_request_j" in points.column_names
