"""The trust boundary (issue 26): hostile bundles rejected by name, bounded memory, inert published text,
configuration identity with hardware and source, duplicates found on content."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import REPO
from tests.helpers.bad_bundles import CORPUS
from wattcounts_pipeline.submissions.bundle import summarize_reasons
from wattcounts_pipeline.submissions.pack import pack_bundle
from wattcounts_pipeline.submissions.store import bundle_id, ingest_bundle


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_bundle_is_rejected_naming_file_row_field(name: str, tmp_path: Path) -> None:
    build, expected = CORPUS[name]
    (tmp_path / "work").mkdir()
    path = build(tmp_path / "work")
    bid = bundle_id(path)
    result = ingest_bundle(path, tmp_path / "store")
    assert result.status == "rejected"
    assert any(expected in r for r in result.reasons), result.reasons[:5]
    assert list((tmp_path / "store" / "accepted").iterdir()) == []
    report = (tmp_path / "store" / "rejected" / bid / "REPORT.md").read_text(encoding="utf-8")
    assert len(report.splitlines()) < 120 and len(report) < 100_000
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", report)


def test_corpus_covers_every_kind() -> None:
    assert len(CORPUS) >= 90


# ---------------------------------------------------------------- reports: grouped and capped

def test_report_groups_and_caps_reasons() -> None:
    reasons = [f"runs.csv: row {i}, field energy_j: {i}.5 is not a number" for i in range(500_000)]
    reasons += ["manifest.yaml: field consent: False not one of [True]"]
    lines = summarize_reasons(reasons)
    assert len(lines) <= 8
    assert lines[:5] == reasons[:5] and lines[5] == "... and 499995 more like the last"
    assert reasons[-1] in lines


def test_submit_cli_prints_a_capped_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_submissions import cli_main

    from wattcounts_pipeline.submissions.example import write_example_bundle
    src = write_example_bundle(tmp_path / "src", n_specs=1, num_requests=4, fmt="csv")
    runs = pd.read_csv(src / "runs.csv", keep_default_na=False)
    pd.concat([runs] * 400, ignore_index=True).assign(energy_j="lots").to_csv(src / "runs.csv", index=False)
    assert cli_main(["submit", str(src), "--inbox", str(tmp_path / "inbox")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) < 120 and "more like the last" in err


# ---------------------------------------------------------------- identity

def _accept(tmp: Path, store: Path, **kw) -> str:
    from wattcounts_pipeline.submissions.example import write_example_bundle
    result = ingest_bundle(pack_bundle(write_example_bundle(tmp / "src", **kw), tmp / "b.tar.gz"), store)
    assert result.status == "accepted", result.reasons
    return result.bundle_id


@pytest.mark.parametrize("evasion", ["reversed", "renamed_run_ids", "with_traces", "subset_plus_new"])
def test_duplicates_are_found_on_measured_values(evasion: str, tmp_path: Path) -> None:
    from wattcounts_pipeline.submissions.example import write_example_bundle
    store = tmp_path / "store"
    first = _accept(tmp_path / "a", store)
    src = write_example_bundle(tmp_path / "b" / "src", traces=evasion == "with_traces")
    runs, requests = pd.read_parquet(src / "runs.parquet"), pd.read_parquet(src / "requests.parquet")
    if evasion == "reversed":
        runs, requests = runs.iloc[::-1], requests.iloc[::-1]
    if evasion == "renamed_run_ids":
        runs = runs.assign(run_id=runs["run_id"] + "-again")
        requests = requests.assign(run_id=requests["run_id"] + "-again")
    if evasion == "subset_plus_new":  # two old runs and one new: the old ones are refused by row
        runs.loc[2, ["energy_j", "cpu_energy_j"]] += 1.0
        runs = bad_consistent(runs)
    runs.to_parquet(src / "runs.parquet", index=False)
    requests.to_parquet(src / "requests.parquet", index=False)
    result = ingest_bundle(pack_bundle(src, tmp_path / "b.tar.gz"), store)
    assert result.status == "rejected"
    if evasion == "subset_plus_new":
        assert result.reasons == [f"runs.parquet: row {r}, field energy_j: the same measured run was already "
                                  f"accepted in bundle {first}" for r in (0, 1)]
    else:
        assert any(f"already accepted in bundle {first}" in r for r in result.reasons), result.reasons


def bad_consistent(f: pd.DataFrame) -> pd.DataFrame:
    from tests.helpers.bad_bundles import consistent
    return consistent(f)


def test_two_machines_measuring_one_spec_are_two_configurations(tmp_path: Path, monkeypatch) -> None:
    from wattcounts_pipeline.aggregate import aggregate
    from wattcounts_pipeline.submissions.example import GPU_HARDWARE
    from wattcounts_pipeline.submissions.store import accepted_tables
    store = tmp_path / "store"
    first = _accept(tmp_path / "a", store)
    other = {**GPU_HARDWARE, "gpu_name": "NVIDIA H200", "cpu_model": "Intel Xeon 8480"}
    monkeypatch.setattr("wattcounts_pipeline.submissions.example.GPU_HARDWARE", other)
    second = _accept(tmp_path / "b", store, seed=3)
    tables = accepted_tables(store)
    assert tables["runs"]["configuration_id"].nunique() == 1  # one spec, measured on two machines
    configs = aggregate(tables["runs"], tables["requests"], pd.DataFrame())
    assert len(configs) == 2 and (configs["n_runs"] == 3).all()
    by_source = configs.set_index("source")
    key = tables["runs"]["configuration_id"].iloc[0]
    assert by_source.loc[f"submission:{first}", "configuration_id"] == f"{key}@{first}"
    assert by_source.loc[f"submission:{second}", "gpu_name"] == "NVIDIA H200"
    assert by_source.loc[f"submission:{first}", "gpu_name"] == GPU_HARDWARE["gpu_name"]


def test_recorded_data_aggregates_one_row_per_id_and_machine() -> None:
    """Our recorded rows as the `measurements` asset serves them: one configuration per id, except an id measured
    on two cards (a `hardware: any` spec run on an H100 and an H200), which is one configuration per card;
    every served run counted once."""
    from wattcounts_pipeline.aggregate import aggregate, configuration_keys
    from wattcounts_pipeline.measure.store import done_keys, find_recorded
    folders = sorted(p for p in (REPO / "data" / "measurements").iterdir() if p.is_dir())
    served = [find_recorded(key, folders) for key in sorted(set().union(*map(done_keys, folders)))]
    runs = pd.concat([tables["runs"] for _, tables in served], ignore_index=True)
    requests = pd.concat([tables["requests"] for _, tables in served], ignore_index=True)
    two_cards = {tables["runs"]["configuration_id"].iloc[0] for where, tables in served if len(where) > 1}
    assert "llama-3.1-8b-transformers-bf16-decode-128-256-b32-0b0e48d9" in two_cards  # H200 2026-11-26, H100 2026-12-05
    keys = configuration_keys(runs)
    renamed = keys != runs["configuration_id"]
    assert set(runs.loc[renamed, "configuration_id"]) == two_cards
    configs = aggregate(runs, requests, pd.DataFrame())
    assert list(configs["configuration_id"]) == sorted(keys.unique())
    assert configs["n_runs"].sum() == len(runs) and runs["run_id"].is_unique
    assert len(configs) == len(served) + len(two_cards)


def test_one_spec_of_ours_on_two_cards_is_two_configurations() -> None:
    """A `hardware: any` spec measured by one call on an H100 and by a later one on an H200 keeps both cards; the
    configuration released first keeps its id and every value, bit for bit, when the second card's rows arrive."""
    from wattcounts_pipeline.aggregate import aggregate
    from wattcounts_pipeline.core.hardware import hardware_suffix
    from wattcounts_pipeline.measure.store import load_sweep
    part = load_sweep(REPO / "data" / "measurements" / "h100-2026-12-05-quant-call7")
    runs, requests = part["runs"], part["requests"]
    one = runs["configuration_id"].iloc[0]
    h100_runs, h100_requests = runs[runs["configuration_id"] == one], requests[requests["configuration_id"] == one]
    h200_runs = h100_runs.assign(hardware_id="1x NVIDIA H200", gpu_name="NVIDIA H200",
                                 run_id=h100_runs["run_id"].str.replace("/r", "/h200-r"),
                                 started_at=h100_runs["started_at"].str.replace("2026-12-05", "2026-12-06"))
    h200_requests = h100_requests.assign(run_id=h100_requests["run_id"].str.replace("/r", "/h200-r"))
    before = aggregate(runs, requests, pd.DataFrame())
    configs = aggregate(pd.concat([runs, h200_runs], ignore_index=True),
                        pd.concat([requests, h200_requests], ignore_index=True), pd.DataFrame())
    two = configs[configs["configuration_id"].str.startswith(one)]
    assert len(two) == 2 and (two["n_runs"] == len(h100_runs)).all()
    assert dict(zip(two["gpu_name"], two["configuration_id"], strict=True)) == {
        "NVIDIA H100 80GB HBM3": one, "NVIDIA H200": f"{one}-{hardware_suffix('1x NVIDIA H200')}"}
    kept = configs[configs["configuration_id"].isin(before["configuration_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before, check_exact=True)  # nothing released before changed


# ---------------------------------------------------------------- what we publish stays inert

HOSTILE_TEXT = ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '[click](javascript:alert(1))',
                "`rm -rf`|x", "a&b"]


def test_release_with_hostile_contributed_text_holds_no_html(tmp_path: Path, monkeypatch) -> None:
    import datasets

    from wattcounts_pipeline.aggregate import aggregate
    from wattcounts_pipeline.defs.aggregate import collect_tables
    from wattcounts_pipeline.hub.release import build_release
    from wattcounts_pipeline.submissions import example
    from wattcounts_pipeline.submissions.store import accepted_tables
    home = tmp_path / "home"
    monkeypatch.setenv("WATTCOUNTS_HOME", str(home))
    for i, text in enumerate(HOSTILE_TEXT):
        hardware = {**example.GPU_HARDWARE, "gpu_name": f"NVIDIA {text}", "cpu_model": text}
        monkeypatch.setattr(example, "GPU_HARDWARE", hardware)
        src = example.write_example_bundle(tmp_path / str(i) / "src", seed=i)
        doc = yaml.safe_load((src / "manifest.yaml").read_text())
        doc["contributor"]["name"] = doc["contributor"]["affiliation"] = doc["notes"] = text
        (src / "manifest.yaml").write_text(yaml.safe_dump(doc))
        runs = pd.read_parquet(src / "runs.parquet")
        runs.assign(hardware_id=text + " x8").to_parquet(src / "runs.parquet", index=False)
        result = ingest_bundle(pack_bundle(src, tmp_path / f"{i}.tar.gz"), home / "submissions")
        assert result.status == "accepted", result.reasons
    tables = collect_tables({}, pd.DataFrame(), accepted_tables(home / "submissions"))
    tables["configurations"] = aggregate(tables["runs"], tables["requests"], tables["quality"])
    release = build_release(tables, "v9.9.9", tmp_path / "releases")
    card = (release / "README.md").read_text(encoding="utf-8")
    for text in HOSTILE_TEXT:
        assert text not in card
    # our own column docs (from schemas/, no contributed byte in them) and their section markers left out
    ours = re.sub(r"<!-- columns:(\w+) -->.*?<!-- /columns:\1 -->", "", card, flags=re.DOTALL)
    assert not re.search(r"<\s*[a-zA-Z!/]", ours), re.findall(r".{20}<\s*[a-zA-Z!/].{20}", ours)
    assert "javascript:" not in ours.lower() and "[click]" not in ours
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", card)
    for name in ("configurations", "runs", "submissions"):
        frame = datasets.load_dataset(str(release), name, split="train").to_pandas()
        numbers = frame.select_dtypes("number").to_numpy(dtype=float)
        assert not np.isinf(numbers).any(), name
        text_cells = [str(c) for c in frame.select_dtypes(exclude="number").to_numpy().ravel()]
        assert not any(re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", c) for c in text_cells), name


# ---------------------------------------------------------------- experiment files

GOOD_EXPERIMENT = """
name: t
models: {m: {source: "gguf:/x.gguf"}}
workloads: {w: {input_tokens: 8, output_tokens: 4, num_requests: 2}}
matrix:
  - {model: m, framework: llamacpp, quantization: Q4_K_M, batch_sizes: [1, 2]}
"""


@pytest.mark.parametrize(("edit", "expected"), [
    (("batch_sizes: [1, 2]", "batch_size: [1, 2]"), "matrix[0].batch_size: unknown key; did you mean 'batch_sizes'?"),
    (("batch_sizes: [1, 2]}", "batch_sizes: [1], repetition: 5}"), "unknown key; did you mean 'repetitions'?"),
    (("batch_sizes: [1, 2]", "batch_sizes: [1000000000]"), "matrix[0].batch_sizes[0]: 1000000000 outside"),
    (("batch_sizes: [1, 2]}", "batch_sizes: [1], min_window_s: -1}"), "matrix[0].min_window_s: -1 outside"),
    (("batch_sizes: [1, 2]}", "batch_sizes: [1], repetitions: 2.5}"), "repetitions: expected a whole number"),
    (("batch_sizes: [1, 2]}", "batch_sizes: [1], idle_s: -2}"), "matrix[0].idle_s: -2 outside"),
    (("batch_sizes: [1, 2]}", "batch_sizes: [1], idle_s: .nan}"), "idle_s: expected a number"),
    (("num_requests: 2}", "num_requests: 2, colour: red}"), "workloads.w.colour: unknown key"),
    (("matrix:\n  - {", "matrix:\n  - [1]\n  - {"), "matrix[0]: expected a mapping, got list"),
    (("models: {m:", "modles: {m:"), "top level.modles: unknown key; did you mean 'models'?"),
])
def test_experiment_file_is_validated_at_load(edit, expected, tmp_path: Path) -> None:
    from wattcounts_pipeline.core.errors import SpecError
    from wattcounts_pipeline.core.specs import load_experiment
    path = tmp_path / "bad.yaml"
    assert edit[0] in GOOD_EXPERIMENT
    path.write_text(GOOD_EXPERIMENT.replace(*edit))
    with pytest.raises(SpecError, match=re.escape(expected)):
        load_experiment(path)


def test_a_malformed_file_never_stops_registration_of_the_others(tmp_path: Path) -> None:
    from wattcounts_pipeline.defs.resources import ExperimentsResource
    (tmp_path / "a.yaml").write_text(GOOD_EXPERIMENT.replace("matrix:\n  - {", "matrix:\n  - [1]\n  - {"))
    (tmp_path / "b.yaml").write_text("matrix: {not: a list}\n")
    (tmp_path / "c.yaml").write_text(GOOD_EXPERIMENT)
    specs = ExperimentsResource(files=[str(tmp_path / n) for n in ("a.yaml", "b.yaml", "c.yaml")]).specs()
    assert len(specs) == 2


def test_sweep_exits_non_zero_when_every_spec_failed(tmp_path: Path, monkeypatch) -> None:
    from wattcounts_pipeline.cli import main
    from wattcounts_pipeline.measure import sweep

    (tmp_path / "e.yaml").write_text(GOOD_EXPERIMENT)
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: {"measured": 0, "failed": 2, "skipped": 0,
                                                             "claimed_elsewhere": 0})
    assert main(["sweep", str(tmp_path / "e.yaml"), "--out", str(tmp_path / "out")]) == 1
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: {"measured": 1, "failed": 1, "skipped": 0,
                                                             "claimed_elsewhere": 0})
    assert main(["sweep", str(tmp_path / "e.yaml"), "--out", str(tmp_path / "out")]) == 0
