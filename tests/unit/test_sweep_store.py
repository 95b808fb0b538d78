"""Sweep folders: JSONL while a sweep runs, zstd parquet once packed, read back identical either way."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import REPO
from wattcounts_pipeline.cli import main
from wattcounts_pipeline.core.errors import RecordedDataError
from wattcounts_pipeline.measure.store import done_keys, find_recorded, load_sweep, pack_sweep, same_frame
from wattcounts_pipeline.measure.sweep import _append

KEYS = ["tiny-a-b1-0000aaaa", "tiny-b-b4-1111bbbb", "tiny-c-b8-2222cccc"]


def _spec_rows(folder: Path, key: str, n_runs: int = 2, with_runs: bool = True, only_runs: bool = False,
               hardware_id: str = "1x NVIDIA H200", started_at: str | None = None) -> None:
    """One spec's rows as the sweep writes them, with the awkward values real rows carry."""
    runs = pd.DataFrame([{
        "run_id": f"{key}/r{i}", "configuration_id": key, "repetition": i, "batch_size": 4, "hardware_id": hardware_id,
        "duration_s": 1.8610111079999996 + i, "energy_j": 0.1 + 0.2, "tiny_j": 5e-324, "neg_zero": -0.0,
        "cpu_energy_j": None, "maybe_j": None if i == 0 else 2.5, "maybe_n": None if i else 3,
        "short": bool(i), "energy_flags": None if i else "short_window",
        "engine_args_json": json.dumps({"compile": True, "device": "cuda", "name": "é\"\\\n"}),
        **({"started_at": started_at} if started_at else {}),
    } for i in range(n_runs)])
    requests = pd.DataFrame([{"run_id": f"{key}/r{i}", "configuration_id": key, "request_index": j,
                              "ttft_s": 0.04428852600000255 * (j + 1), "energy_j": 660.6482247285478 / (j + 1)}
                             for i in range(n_runs) for j in range(3)])
    traces = pd.DataFrame([{"run_id": f"{key}/r{i}", "t_s": t * 0.0390940054999902, "domain": "gpu:0",
                            "power_w": 116.539 + t, "temperature_c": 32.0}
                           for i in range(n_runs) for t in range(5)])
    if not only_runs:
        _append(folder / "requests.jsonl", requests)
        _append(folder / "power_traces.jsonl", traces)
        _append(folder / "specs.jsonl", pd.DataFrame([{"configuration_id": key, "spec": json.dumps({"k": key})}]))
    if with_runs:
        _append(folder / "runs.jsonl", runs)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    folder = tmp_path / "h200-test"
    folder.mkdir()
    _spec_rows(folder, KEYS[0])
    _spec_rows(folder, KEYS[1], n_runs=3)
    _spec_rows(folder, KEYS[2], with_runs=False)  # killed before its runs row: not done
    return folder


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert list(a) == list(b)
    for name, frame in a.items():
        assert same_frame(frame, b[name]) is None, (name, same_frame(frame, b[name]))
        pd.testing.assert_frame_equal(frame, b[name], check_exact=True)


def _snapshot(folder: Path) -> dict:
    return {"done": done_keys(folder), "sweep": load_sweep(folder),
            "recorded": {k: find_recorded(k, [folder]) for k in KEYS}}


def test_pack_reads_back_identical(sweep: Path) -> None:
    before = _snapshot(sweep)
    assert before["done"] == set(KEYS[:2])
    assert before["recorded"][KEYS[2]] is None
    report = pack_sweep(sweep)
    assert set(report) == {"runs", "requests", "power_traces", "specs"}
    assert not list(sweep.glob("*.jsonl")) and not list(sweep.glob(".*.tmp"))
    assert sorted(p.name for p in sweep.glob("*.parquet")) == [
        "power_traces.parquet", "requests.parquet", "runs.parquet", "specs.parquet"]
    after = _snapshot(sweep)
    assert after["done"] == before["done"]
    _assert_same(before["sweep"], after["sweep"])
    for key in KEYS[:2]:
        assert after["recorded"][key][0] == [sweep]
        _assert_same(before["recorded"][key][1], after["recorded"][key][1])
    runs = after["sweep"]["runs"]
    assert runs["cpu_energy_j"].tolist() == [None] * 5  # all-null stays None, not NaN
    assert math.isnan(runs["maybe_j"].iloc[0]) and runs["maybe_j"].dtype == "float64"
    assert math.copysign(1.0, runs["neg_zero"].iloc[0]) == -1.0 and runs["tiny_j"].iloc[0] == 5e-324
    assert runs["engine_args_json"].iloc[0] == json.dumps({"compile": True, "device": "cuda", "name": "é\"\\\n"})
    # rows of the unfinished spec are kept in the files, still filtered on reading
    assert pd.read_parquet(sweep / "requests.parquet")["configuration_id"].eq(KEYS[2]).sum() == 6


def test_pack_command_line(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", str(sweep)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["packed"]["runs"]["rows"] == 5
    assert main(["pack", str(sweep)]) == 0  # nothing left to pack: a no-op


def test_in_progress_jsonl_and_resumed_pack(sweep: Path) -> None:
    with (sweep / "runs.jsonl").open("a") as fh:
        fh.write('{"run_id": "cut-by-a-kill", "configur')  # a line cut mid-write
    assert done_keys(sweep) == set(KEYS[:2])
    assert len(load_sweep(sweep)["runs"]) == 5
    pack_sweep(sweep)
    # the sweep resumed after packing: new JSONL rows beside the parquet, both read, in that order
    _spec_rows(sweep, KEYS[2], n_runs=1, only_runs=True)
    assert done_keys(sweep) == set(KEYS)  # the cache notices the new file
    tables = load_sweep(sweep)
    assert tables["runs"]["run_id"].tolist()[-1] == f"{KEYS[2]}/r0"
    _, picked = find_recorded(KEYS[2], [sweep])
    assert len(picked["runs"]) == 1 and len(picked["power_traces"]) == 10
    merged = load_sweep(sweep)
    assert merged["runs"]["repetition"].dtype == "int64" and merged["runs"]["cpu_energy_j"].isna().all()
    pack_sweep(sweep)  # merges the new rows into the parquet
    assert not (sweep / "runs.jsonl").exists()
    _assert_same(merged, load_sweep(sweep))


def test_recorded_rows_come_from_the_first_folder_of_each_machine(tmp_path: Path) -> None:
    """A repeat call on the same card is not served twice; another card's call is served beside it, with
    run ids told apart by the suffix `aggregate.configuration_keys` gives that card's configuration; the card
    measured first keeps the plain id (a released configuration keeps its id), whatever the folders' order."""
    from wattcounts_pipeline.aggregate import configuration_keys
    from wattcounts_pipeline.core.hardware import hardware_suffix
    h100, h200, h200_repeat = (tmp_path / name for name in ("h100-a", "h200-a", "h200-b-repeat"))
    for folder, machine, started in ((h100, "1x NVIDIA H100 80GB HBM3", "2026-12-05T10:00:00"),
                                     (h200, "1x NVIDIA H200", "2026-11-26T10:00:00"),
                                     (h200_repeat, "1x NVIDIA H200", "2026-12-06T10:00:00")):
        folder.mkdir()
        _spec_rows(folder, KEYS[0], hardware_id=machine, started_at=started)
    _spec_rows(h200, KEYS[1])
    served, picked = find_recorded(KEYS[0], [h100, h200, h200_repeat])
    assert served == [h100, h200]  # the H200 repeat call is not served
    assert len(picked["runs"]) == 4 and picked["runs"]["run_id"].is_unique
    assert len(picked["requests"]) == 12 and len(picked["power_traces"]) == 20
    assert set(picked["requests"]["run_id"]) == set(picked["runs"]["run_id"]) == set(picked["power_traces"]["run_id"])
    keys = configuration_keys(picked["runs"].assign(source="ours"))
    assert set(keys) == {KEYS[0], f"{KEYS[0]}-{hardware_suffix('1x NVIDIA H100 80GB HBM3')}"}  # the H200 came first
    assert (picked["runs"]["run_id"].str.rsplit("/", n=1).str[0] == keys).all()
    served, picked = find_recorded(KEYS[1], [h100, h200])  # one machine: ids as recorded
    assert served == [h200] and picked["runs"]["run_id"].tolist() == [f"{KEYS[1]}/r0", f"{KEYS[1]}/r1"]


def test_corrupt_parquet_names_the_file(sweep: Path) -> None:
    pack_sweep(sweep)
    bad = sweep / "power_traces.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(RecordedDataError, match=r"power_traces\.parquet"):
        load_sweep(sweep)
    with pytest.raises(RecordedDataError, match=r"power_traces\.parquet"):
        find_recorded(KEYS[0], [sweep])


def test_loads_are_independent_copies(sweep: Path) -> None:
    pack_sweep(sweep)
    first = load_sweep(sweep)
    first["runs"].loc[0, "energy_j"] = -1.0
    _, picked = find_recorded(KEYS[0], [sweep])
    picked["runs"].loc[0, "energy_j"] = -2.0
    assert load_sweep(sweep)["runs"].loc[0, "energy_j"] == 0.1 + 0.2


def test_recorded_gpu_sweeps_read_back_as_fingerprinted() -> None:
    """The committed data/measurements serve exactly what the JSONL served before packing."""
    spec = importlib.util.spec_from_file_location("roundtrip", REPO / "benchmarks" / "measurements_roundtrip.py")
    roundtrip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roundtrip)
    before = json.loads((REPO / "benchmarks" / "results" / "measurements_fingerprint.json").read_text())
    got = roundtrip.collect(roundtrip.ROOT)
    for name, entry in before["folders"].items():
        assert got["folders"][name] == entry, name
    for key, entry in before["recorded"].items():
        assert got["recorded"][key] == entry, key
