"""Community submissions: a corpus of bad bundles (one fault each), valid bundles, crashes, the CLI."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.helpers import REPO
from wattcounts_pipeline import paths
from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, Limits
from wattcounts_pipeline.submissions.cli import register
from wattcounts_pipeline.submissions.example import example_spec, write_example_bundle
from wattcounts_pipeline.submissions.manifest import manifest_fields
from wattcounts_pipeline.submissions.pack import pack_bundle, submit
from wattcounts_pipeline.submissions.store import (
    accepted_tables,
    bundle_id,
    bundle_state,
    clean_stale,
    ingest_bundle,
    list_inbox,
)

# ---------------------------------------------------------------- helpers that build bundles


def _folder(tmp: Path, *, gpu: bool = True, fmt: str = "parquet", traces: bool = False, n_specs: int = 1) -> Path:
    return write_example_bundle(tmp / "src", gpu=gpu, fmt=fmt, traces=traces, n_specs=n_specs)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False) if path.suffix == ".csv" else pd.read_parquet(path)


def _write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def _bundle(tmp: Path, *, manifest: Callable[[dict], object] | None = None,
            tables: dict[str, Callable[[pd.DataFrame], pd.DataFrame | None]] | None = None,
            gpu: bool = True, fmt: str = "parquet", traces: bool = False) -> Path:
    """A valid bundle with one mutation of the manifest and/or tables, packed as .tar.gz."""
    folder = _folder(tmp, gpu=gpu, fmt=fmt, traces=traces)
    if manifest:
        doc = yaml.safe_load((folder / "manifest.yaml").read_text())
        manifest(doc)
        (folder / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for table, fn in (tables or {}).items():
        path = next(folder.glob(f"{table}.*"))
        frame = _read(path)
        _write(fn(frame) if fn(frame) is not None else frame, path)
    return pack_bundle(folder, tmp / "bundle.tar.gz")


def _files(tmp: Path, **kw) -> dict[str, bytes]:
    folder = _folder(tmp, **kw)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _targz(tmp: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out = tmp / "bundle.tar.gz"
    out.write_bytes(buf.getvalue())
    return out


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


def _raw(tmp: Path, changes: dict[str, bytes | None], extra: list | None = None) -> Path:
    """The valid bundle's files with some replaced (None removes), plus `extra` tar members."""
    files = _files(tmp) | changes
    members = [_file(n, d) for n, d in files.items() if d is not None]
    return _targz(tmp, members + (extra or []))


def _zip(tmp: Path, infos: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    out = tmp / "bundle.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in infos:
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return out


def _set(column: str, value, row: int = 0) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        if column in frame and frame[column].dtype != object and isinstance(value, str):
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return fn


def _manifest_set(path: str, value) -> Callable[[dict], None]:
    def fn(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return fn


# ---------------------------------------------------------------- the corpus: one fault per bundle

CASES: dict[str, tuple[Callable[[Path], Path], str, Limits]] = {}


def case(expected: str, limits: Limits = DEFAULT_LIMITS):
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CASES[fn.__name__] = (fn, expected, limits)
        return fn
    return register


@case("not a .tar.gz or .zip archive")
def not_an_archive(tmp):
    (tmp / "bundle.tar.gz").write_bytes(b"just some text, not an archive\n" * 10)
    return tmp / "bundle.tar.gz"


@case("corrupt or truncated .tar.gz")
def truncated_targz(tmp):
    path = pack_bundle(_folder(tmp), tmp / "bundle.tar.gz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@case("compressed size", Limits(max_compressed_bytes=2_000))
def compressed_too_large(tmp):
    return _bundle(tmp)


@case("uncompressed size exceeds the limit", Limits(max_uncompressed_bytes=20_000, max_ratio=1e9))
def uncompressed_too_large(tmp):
    return _bundle(tmp)


@case("archive bomb: expands more than 100x")
def targz_bomb(tmp):
    return _raw(tmp, {"runs.csv": b"0" * (20 * 1024 * 1024)}, [])


@case("archive bomb: expands more than 100x")
def zip_bomb(tmp):
    return _zip(tmp, [(zipfile.ZipInfo("manifest.yaml"), b"a: 1\n"),
                      (zipfile.ZipInfo("runs.csv"), b"0" * (20 * 1024 * 1024))])


@case("more than 16 members")
def too_many_members(tmp):
    return _raw(tmp, {}, [_file(f"extra{i}.txt", b"x") for i in range(20)])


@case("attempts path traversal")
def path_traversal(tmp):
    return _raw(tmp, {}, [_file("../../etc/cron.d/evil", b"* * * * * root sh\n")])


@case("has an absolute path")
def absolute_path(tmp):
    return _raw(tmp, {}, [_file("/tmp/evil.yaml", b"x")])


@case("holds a backslash")
def backslash_path(tmp):
    return _raw(tmp, {}, [_file("..\\..\\evil.yaml", b"x")])


@case("is a symlink")
def tar_symlink(tmp):
    return _raw(tmp, {"manifest.yaml": None}, [_special("manifest.yaml", tarfile.SYMTYPE, "/etc/passwd")])


@case("is a hard link")
def tar_hardlink(tmp):
    return _raw(tmp, {"requests.parquet": None}, [_special("requests.parquet", tarfile.LNKTYPE, "runs.parquet")])


@case("is a device or FIFO")
def tar_char_device(tmp):
    return _raw(tmp, {}, [_special("power_traces.csv", tarfile.CHRTYPE)])


@case("is a device or FIFO")
def tar_fifo(tmp):
    return _raw(tmp, {}, [_special("power_traces.csv", tarfile.FIFOTYPE)])


@case("is a symlink")
def zip_symlink(tmp):
    link = zipfile.ZipInfo("manifest.yaml")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    files = _files(tmp)
    return _zip(tmp, [(link, b"/etc/passwd")] + [(zipfile.ZipInfo(n), d) for n, d in files.items()
                                                 if n != "manifest.yaml"])


@case("is encrypted")
def zip_encrypted(tmp):
    path = _zip(tmp, [(zipfile.ZipInfo(n), d) for n, d in _files(tmp).items()])
    data = bytearray(path.read_bytes())  # zipfile cannot write encrypted members: set the flag bit by hand
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + flag_offset] |= 0x1
            start += 4
    path.write_bytes(bytes(data))
    return path


@case("duplicate member 'runs.parquet'")
def duplicate_member(tmp):
    files = _files(tmp)
    return _raw(tmp, {}, [_file("runs.parquet", files["runs.parquet"])])


@case("unknown file(s) ['notes.txt']")
def unknown_extra_file(tmp):
    return _raw(tmp, {}, [_file("notes.txt", b"hello")])


@case("unexpected nested path")
def nested_path(tmp):
    return _raw(tmp, {}, [_file("data/more/runs.csv", b"a\n")])


@case("missing manifest.yaml")
def missing_manifest(tmp):
    return _raw(tmp, {"manifest.yaml": None})


@case("missing requests.parquet or requests.csv")
def missing_requests(tmp):
    return _raw(tmp, {"requests.parquet": None})


@case("both runs.parquet and runs.csv")
def runs_twice(tmp):
    return _raw(tmp, {"runs.csv": b"run_id\nx\n"})


@case("manifest.yaml: not UTF-8 text")
def manifest_not_utf8(tmp):
    files = _files(tmp)
    return _raw(tmp, {"manifest.yaml": files["manifest.yaml"].replace(b"Ada Example", "Adà".encode("latin-1"))})


@case("manifest.yaml: not valid YAML")
def manifest_bad_yaml(tmp):
    return _raw(tmp, {"manifest.yaml": b"contributor: {name: [unclosed\n"})


@case("manifest.yaml: YAML tag not allowed")
def manifest_python_tag(tmp):
    return _raw(tmp, {"manifest.yaml": b"notes: !!python/object/apply:os.system ['touch /tmp/pwned']\n"})


@case("YAML aliases (*anchor) are not allowed")
def manifest_alias_bomb(tmp):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]" for p, c in zip("abcdefg", "bcdefgh")]
    return _raw(tmp, {"manifest.yaml": "\n".join(lines).encode()})


@case("manifest.yaml: top level must be a mapping")
def manifest_not_mapping(tmp):
    return _raw(tmp, {"manifest.yaml": b"- just\n- a list\n"})


@case("manifest.yaml: 2001 bytes, more than the 2000 allowed", Limits(max_manifest_bytes=2000))
def manifest_too_large(tmp):
    return _raw(tmp, {"manifest.yaml": b"#" * 2000 + b"\n"})


@case("field consent: False not one of [True]")
def no_consent(tmp):
    return _bundle(tmp, manifest=_manifest_set("consent", False))


@case("field license: 'proprietary' not one of ['CC-BY-4.0']")
def wrong_license(tmp):
    return _bundle(tmp, manifest=_manifest_set("license", "proprietary"))


@case("field contributor: required field is missing")
def no_contributor(tmp):
    return _bundle(tmp, manifest=lambda doc: doc.pop("contributor"))


@case("field hardware.gpu_count: 65 above maximum 64")
def implausible_gpu_count(tmp):
    return _bundle(tmp, manifest=_manifest_set("hardware.gpu_count", 65))


@case("field hardware.gpu_name: required when hardware.gpu_count > 0")
def gpus_without_name(tmp):
    return _bundle(tmp, manifest=lambda doc: doc["hardware"].pop("gpu_name"))


@case("field specs[0].dtype: 'float13' not one of")
def unknown_dtype(tmp):
    return _bundle(tmp, manifest=_manifest_set("specs.0.dtype", "float13"))


@case("field specs[0].framework: 'tensorrt' not one of")
def unknown_framework(tmp):
    return _bundle(tmp, manifest=_manifest_set("specs.0.framework", "tensorrt"))


@case("field specs[0]: unknown spec key(s) ['colour', 'quality.colour']")
def spec_unknown_key(tmp):
    def fn(doc):  # ExperimentSpec.from_dict would silently ignore both
        doc["specs"][0]["colour"] = "blue"
        doc["specs"][0]["quality"]["colour"] = "blue"
    return _bundle(tmp, manifest=fn)


@case("field specs[0]: not an ExperimentSpec.to_dict() (TypeError: ModelRef.__init__() got an unexpected keyword")
def spec_unknown_model_key(tmp):
    return _bundle(tmp, manifest=_manifest_set("specs.0.model.colour", "blue"))


@case("field specs[0]: not an ExperimentSpec.to_dict() (KeyError: 'workload')")
def spec_missing_workload(tmp):
    return _bundle(tmp, manifest=lambda doc: doc["specs"][0].pop("workload"))


@case("field colour: unknown field")
def manifest_unknown_field(tmp):
    return _bundle(tmp, manifest=_manifest_set("colour", "blue"))


@case("field schema_versions.runs: bundle follows version 2, this pipeline reads version 1")
def newer_schema_version(tmp):
    return _bundle(tmp, manifest=_manifest_set("schema_versions.runs", 2))


@case("field software.python: expected string, got float 3.1")
def unquoted_version(tmp):
    return _bundle(tmp, manifest=_manifest_set("software.python", 3.10))


@case("field contributor.name: starts with '=' (spreadsheet formula injection)")
def manifest_formula(tmp):
    return _bundle(tmp, manifest=_manifest_set("contributor.name", '=HYPERLINK("http://evil","x")'))


@case("field specs[1]: no row of runs.parquet measures configuration")
def spec_without_runs(tmp):
    return _bundle(tmp, manifest=lambda doc: doc["specs"].append(example_spec(5).to_dict()))


@case("runs.csv: not UTF-8 text")
def runs_csv_not_utf8(tmp):
    folder = _folder(tmp, fmt="csv")
    path = folder / "runs.csv"
    path.write_bytes(path.read_bytes().replace(b"llama-3.1-8b", b"llama-\xff"))
    return pack_bundle(folder, tmp / "bundle.tar.gz")


@case("runs.csv: holds NUL characters")
def runs_csv_nul(tmp):
    folder = _folder(tmp, fmt="csv")
    path = folder / "runs.csv"
    path.write_bytes(path.read_bytes().replace(b"vllm", b"vl\x00lm", 1))
    return pack_bundle(folder, tmp / "bundle.tar.gz")


@case("runs.csv: row 1, field model: starts with '=' (spreadsheet formula injection)")
def csv_formula_injection(tmp):
    return _bundle(tmp, fmt="csv", tables={"runs": _set("model", "=cmd|' /C calc'!A0", row=1)})


@case("requests.parquet: row 2, field run_id: starts with '@' (spreadsheet formula injection)")
def parquet_formula_injection(tmp):
    return _bundle(tmp, tables={"requests": _set("run_id", "@SUM(1+1)", row=2)})


@case("runs.csv: row 0, field energy_j: 'lots' is not a number")
def csv_not_a_number(tmp):
    return _bundle(tmp, fmt="csv", tables={"runs": _set("energy_j", "lots")})


@case("runs.parquet: row 0, field batch_size: 2.5 is not an integer")
def float_in_integer_column(tmp):
    return _bundle(tmp, tables={"runs": lambda f: f.astype({"batch_size": float}).pipe(_set("batch_size", 2.5))})


@case("runs.parquet: missing column 'energy_j'")
def missing_column(tmp):
    return _bundle(tmp, tables={"runs": lambda f: f.drop(columns=["energy_j"])})


@case("runs.parquet: unknown column 'colour'")
def unknown_column(tmp):
    return _bundle(tmp, tables={"runs": lambda f: f.assign(colour="blue")})


@case("runs.parquet: unsupported column type(s) ['tags (list<element: string>)'")
def parquet_nested_type(tmp):
    folder = _folder(tmp)
    table = pq.read_table(folder / "runs.parquet")
    table = table.append_column("tags", pa.array([["a"]] * table.num_rows, pa.list_(pa.string())))
    pq.write_table(table, folder / "runs.parquet")
    return pack_bundle(folder, tmp / "bundle.tar.gz")


@case("runs.parquet: not a readable parquet file")
def corrupt_parquet(tmp):
    return _raw(tmp, {"runs.parquet": b"PAR1" + b"\x00" * 64 + b"PAR1"})


@case("runs.parquet: row 0, field energy_j: failed greater_than_or_equal_to(0.0)")
def negative_energy(tmp):
    return _bundle(tmp, tables={"runs": _set("energy_j", -5.0)})


@case("runs.parquet: row 1, field energy_per_token_j: failed equals energy_j / output_tokens_total")
def inconsistent_energy_per_token(tmp):
    return _bundle(tmp, tables={"runs": lambda f: f.assign(
        energy_per_token_j=f["energy_per_token_j"].where(f.index != 1, f["energy_per_token_j"] * 2))})


@case("runs.parquet: row 0, field gpu_energy_j: failed GPU mean power ≤ 1.1 × power limit × GPU count")
def gpu_power_beyond_limit(tmp):
    def fn(f):
        f = f.copy()
        f.loc[0, "gpu_energy_j"] = 2000.0 * f.loc[0, "duration_s"]
        f.loc[0, "energy_j"] = f.loc[0, "gpu_energy_j"] + f.loc[0, "cpu_energy_j"] + f.loc[0, "dram_energy_j"]
        return _consistent(f)
    return _bundle(tmp, tables={"runs": fn})


@case("runs.csv: row 0, field mean_power_w: 4999")
def cpu_power_beyond_physics(tmp):
    def fn(f):
        f = f.copy()
        f.loc[0, "energy_j"] = 49_999.0 * f.loc[0, "duration_s"]
        f.loc[0, "cpu_energy_j"] = f.loc[0, "energy_j"]
        return _consistent(f)
    return _bundle(tmp, gpu=False, fmt="csv", tables={"runs": fn})


@case("runs.parquet: row 2, field temperature_end_c: failed present for NVML rows")
def nvml_without_temperature(tmp):
    return _bundle(tmp, tables={"runs": _set("temperature_end_c", None, row=2)})


@case("runs.parquet: row 1, field run_id: failed multiple_fields_uniqueness")
def duplicate_run_id(tmp):
    return _bundle(tmp, tables={"runs": lambda f: f.assign(run_id=[f["run_id"][0]] * 2 + list(f["run_id"][2:]))})


@case("runs.parquet: row 0, field energy_method: failed isin(")
def unknown_energy_method(tmp):
    return _bundle(tmp, tables={"runs": _set("energy_method", "vibes")})


@case("runs.parquet: row 0, field configuration_id: 'someone-elses-config' matches no spec key in manifest.yaml")
def configuration_without_spec(tmp):
    return _bundle(tmp, tables={"runs": _set("configuration_id", "someone-elses-config")})


@case("runs.parquet: row 0, field framework: 'transformers' differs from the spec's 'vllm'")
def framework_mismatch(tmp):
    return _bundle(tmp, tables={"runs": _set("framework", "transformers")})


@case("runs.parquet: row 2, field quantization: 'Q4_K_M' differs from the spec's 'BF16'")
def quantization_mismatch(tmp):
    return _bundle(tmp, tables={"runs": _set("quantization", "Q4_K_M", row=2)})


@case("runs.parquet: row 0, field engine_args_json: '{\"max_model_len\":8192}' differs from the spec's")
def engine_args_mismatch(tmp):
    return _bundle(tmp, tables={"runs": _set("engine_args_json", '{"max_model_len": 8192}')})


@case("runs.parquet: row 0, field gpu_name: 'NVIDIA A100-SXM4-80GB' differs from manifest.yaml hardware.gpu_name")
def hardware_mismatch(tmp):
    return _bundle(tmp, tables={"runs": _set("gpu_name", "NVIDIA A100-SXM4-80GB")})


@case("runs.parquet: row 0, field gpu_count: 16 uses more GPUs than manifest.yaml hardware.gpu_count (8)")
def more_gpus_than_declared(tmp):
    return _bundle(tmp, tables={"runs": _set("gpu_count", 16)})


@case("runs.parquet: row 0, field energy_method: 'replay' is for tests")
def replayed_energy(tmp):
    return _bundle(tmp, tables={"runs": _set("energy_method", "replay")})


@case("runs.parquet: row 1, field started_at: '2999-01-01T00:00:00Z' lies in the future")
def started_in_future(tmp):
    return _bundle(tmp, tables={"runs": _set("started_at", "2999-01-01T00:00:00Z", row=1)})


@case("requests.parquet: row 0, field run_id: 'ghost/r9' is no run of runs.parquet")
def request_of_unknown_run(tmp):
    return _bundle(tmp, tables={"requests": _set("run_id", "ghost/r9")})


@case("field num_requests: 4 but requests.parquet holds 3 requests of this run")
def missing_request_rows(tmp):
    return _bundle(tmp, tables={"requests": lambda f: f.drop(index=[0]).reset_index(drop=True)})


@case("requests.parquet: row 3, field ttft_s: failed not above e2e_s")
def ttft_after_end(tmp):
    return _bundle(tmp, tables={"requests": _set("ttft_s", 1e6, row=3)})


@case("power_traces.csv: row 0, field power_w: 5000.0 beyond what the run's hardware can draw in that domain")
def trace_beyond_physics(tmp):
    folder = _folder(tmp, traces=True)
    path = folder / "power_traces.parquet"
    frame = pd.read_parquet(path)
    path.unlink()
    frame.loc[0, "power_w"] = 5000.0
    frame.to_csv(folder / "power_traces.csv", index=False)
    return pack_bundle(folder, tmp / "bundle.tar.gz")


def _consistent(f: pd.DataFrame) -> pd.DataFrame:
    """Recompute the derived columns so that only the injected physics is wrong."""
    return f.assign(mean_power_w=f["energy_j"] / f["duration_s"],
                    energy_per_token_j=f["energy_j"] / f["output_tokens_total"],
                    energy_per_request_j=f["energy_j"] / f["num_requests"],
                    energy_net_j=f["energy_j"] - f["idle_power_w"] * f["duration_s"],
                    energy_per_token_net_j=(f["energy_j"] - f["idle_power_w"] * f["duration_s"])
                    / f["output_tokens_total"])


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_bundle_is_rejected_with_its_reason(name, tmp_path):
    build, expected, limits = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    path = build(work)
    store = tmp_path / "store"
    bid = bundle_id(path)
    result = ingest_bundle(path, store, limits)
    assert result.status == "rejected"
    assert any(expected in r for r in result.reasons), result.reasons
    assert list((store / "accepted").iterdir()) == []
    assert result.location == store / "rejected" / bid
    report = (result.location / "REPORT.md").read_text(encoding="utf-8")
    assert expected in report
    assert not path.exists() and any(result.location.glob("original.*"))  # moved out of the inbox
    assert not list(store.glob("*/.incoming-*"))


# ---------------------------------------------------------------- valid bundles

VALID = {
    "gpu_parquet": {"gpu": True, "fmt": "parquet"},
    "cpu_estimate_csv": {"gpu": False, "fmt": "csv"},
    "gpu_csv_with_traces": {"gpu": True, "fmt": "csv", "traces": True},
    "cpu_parquet_multi_spec": {"gpu": False, "fmt": "parquet", "n_specs": 3},
    "gpu_parquet_multi_spec_traces": {"gpu": True, "fmt": "parquet", "n_specs": 2, "traces": True},
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_bundle_is_accepted(name, tmp_path):
    path = pack_bundle(_folder(tmp_path, **VALID[name]), tmp_path / "b.tar.gz")
    bid = bundle_id(path)
    result = ingest_bundle(path, tmp_path / "store")
    assert result.status == "accepted", result.reasons
    assert result.location == tmp_path / "store" / "accepted" / bid
    assert sorted(p.name for p in result.location.iterdir()) == sorted(
        ["manifest.yaml", "original.tar.gz", "provenance.json", "requests.parquet", "runs.parquet"]
        + (["power_traces.parquet"] if VALID[name].get("traces") else []))
    runs = pd.read_parquet(result.location / "runs.parquet")
    assert (runs["source"] == f"submission:{bid}").all()
    assert runs["run_id"].str.startswith(f"{bid}/").all()
    assert result.rows["runs"] == len(runs)
    provenance = json.loads((result.location / "provenance.json").read_text())
    assert provenance["contributor"]["handle"] == "ada-example" and provenance["license"] == "CC-BY-4.0"
    assert provenance["bundle_id"] == bid
    assert not path.exists()
    for item in result.location.iterdir():
        assert stat.S_IMODE(item.stat().st_mode) & 0o222 == 0, item
    assert stat.S_IMODE(result.location.stat().st_mode) & 0o222 == 0


def test_zip_with_top_level_folder_is_accepted(tmp_path):
    folder = _folder(tmp_path)
    out = tmp_path / "b.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for p in folder.iterdir():
            zf.writestr(f"my-bundle/{p.name}", p.read_bytes())
    result = ingest_bundle(out, tmp_path / "store")
    assert result.status == "accepted", result.reasons
    assert (result.location / "original.zip").exists()


def test_negative_numbers_in_numeric_csv_columns_are_fine(tmp_path):
    """Net energy may dip below zero within noise: a leading '-' is only a formula in a string column."""
    def below_idle(f):
        f = f.assign(idle_power_w=f["mean_power_w"] * 1.05)
        net = f["energy_j"] - f["idle_power_w"] * f["duration_s"]
        return f.assign(energy_net_j=net, energy_per_token_net_j=net / f["output_tokens_total"])
    path = _bundle(tmp_path, gpu=False, fmt="csv", tables={"runs": below_idle})
    with tarfile.open(path) as tar:
        assert b",-" in tar.extractfile("runs.csv").read()
    result = ingest_bundle(path, tmp_path / "store")
    assert result.status == "accepted", result.reasons
    assert (pd.read_parquet(result.location / "runs.parquet")["energy_net_j"] < 0).all()


def test_nullable_columns_may_be_left_out(tmp_path):
    gpu_only = ["gpu_name", "gpu_energy_j", "dram_energy_j", "gpu_power_limit_w", "driver_version",
                "temperature_start_c", "temperature_end_c", "sm_clock_mhz"]
    path = _bundle(tmp_path, gpu=False, fmt="csv", tables={"runs": lambda f: f.drop(columns=gpu_only),
                                                           "requests": lambda f: f.drop(columns=["tpot_s"])})
    result = ingest_bundle(path, tmp_path / "store")
    assert result.status == "accepted", result.reasons
    assert pd.read_parquet(result.location / "runs.parquet")["gpu_name"].isna().all()


def test_accepted_tables_concatenate_bundles_with_attribution(tmp_path):
    store = tmp_path / "store"
    for i, kw in enumerate([{"gpu": True}, {"gpu": False, "fmt": "csv"}, {"gpu": True, "n_specs": 2, "seed": 7}]):
        path = pack_bundle(write_example_bundle(tmp_path / str(i), **kw), tmp_path / f"b{i}.tar.gz")
        assert ingest_bundle(path, store).status == "accepted"
    tables = accepted_tables(store)
    assert len(tables["runs"]) == 3 + 3 + 6 and len(tables["requests"]) == 4 * 12
    assert len(tables["submissions"]) == 3 and set(tables["submissions"]["contributor_handle"]) == {"ada-example"}
    assert "contact" not in " ".join(tables["submissions"].columns)
    assert tables["runs"]["run_id"].is_unique  # namespaced by bundle: same configuration, different machines
    assert set(tables["runs"]["source"]) == {f"submission:{b}" for b in tables["submissions"]["bundle_id"]}


def test_accepted_tables_of_an_empty_store(tmp_path):
    tables = accepted_tables(tmp_path / "nothing")
    assert tables["runs"].empty and "energy_j" in tables["runs"].columns and tables["submissions"].empty


# ---------------------------------------------------------------- duplicates

def test_same_bundle_twice_is_accepted_once(tmp_path):
    folder = _folder(tmp_path)
    store = tmp_path / "store"
    first = ingest_bundle(pack_bundle(folder, tmp_path / "a.tar.gz"), store)
    again = ingest_bundle(pack_bundle(folder, tmp_path / "b.tar.gz"), store)  # deterministic packing: same id
    assert first.status == again.status == "accepted" and (first.repeat, again.repeat) == (False, True)
    assert again.rows == first.rows and again.location == first.location
    assert len(list((store / "accepted").iterdir())) == 1
    assert list((store / "rejected").iterdir()) == []  # never both accepted and rejected
    assert not (tmp_path / "b.tar.gz").exists()


def test_same_rows_in_another_format_are_a_duplicate(tmp_path):
    store = tmp_path / "store"
    first = ingest_bundle(pack_bundle(_folder(tmp_path / "p", fmt="parquet"), tmp_path / "a.tar.gz"), store)
    second = ingest_bundle(pack_bundle(_folder(tmp_path / "c", fmt="csv"), tmp_path / "b.zip"), store)
    assert first.status == "accepted" and second.status == "rejected"
    assert f"the same measurements were already accepted in bundle {first.bundle_id}" in second.reasons[0]


# ---------------------------------------------------------------- crashes

CRASH = textwrap.dedent("""
    import os, signal, sys
    import pyarrow.parquet as pq
    from wattcounts_pipeline.submissions import store

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[3] == "before-rename":  # everything written into the temp folder, then killed
        real = store.write_accepted
        store.write_accepted = lambda *a: (real(*a), die())
    else:  # killed while writing the second table
        real_write, calls = pq.write_table, []
        def write_then_die(*a, **kw):
            calls.append(1)
            if len(calls) == 2:
                die()
            real_write(*a, **kw)
        pq.write_table = write_then_die
    store.ingest_bundle(sys.argv[1], sys.argv[2])
""")


@pytest.mark.parametrize("when", ["before-rename", "mid-write"])
def test_killed_ingestion_leaves_no_half_accepted_bundle(tmp_path, when):
    path = pack_bundle(_folder(tmp_path), tmp_path / "b.tar.gz")
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(paths.REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", CRASH, str(path), str(store), when], env=env, check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    leftovers = list((store / "accepted").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".incoming-") and any(leftovers[0].iterdir())
    assert bundle_state(store, bundle_id(path)) == "unseen"
    assert path.exists()  # still in the inbox: it will be retried
    result = ingest_bundle(path, store)  # the next run cleans up and accepts
    assert result.status == "accepted", result.reasons
    assert [p.name for p in (store / "accepted").iterdir()] == [result.bundle_id]


def test_clean_stale_spares_locked_ingestions(tmp_path):
    live = tmp_path / "accepted" / ".incoming-00000000000000aa-xyz"
    dead = tmp_path / "rejected" / ".incoming-00000000000000bb-xyz"
    live.mkdir(parents=True)
    dead.mkdir(parents=True)
    dead.chmod(0o555)  # killed after it was made read-only
    with atomic.locked(tmp_path / ".locks" / "00000000000000aa.lock"):
        assert clean_stale(tmp_path) == [dead]
    assert live.exists() and not dead.exists()


# ---------------------------------------------------------------- submit and the inbox

def cli_main(argv: list[str]) -> int:
    """`wattcounts <argv>` with only the submit subcommand registered (as wattcounts_pipeline.cli does)."""
    parser = argparse.ArgumentParser(prog="wattcounts")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_submit_cli_packs_into_the_inbox(tmp_path, capsys):
    folder = _folder(tmp_path)
    inbox = tmp_path / "inbox"
    assert cli_main(["submit", str(folder), "--inbox", str(inbox)]) == 0
    bid, where = capsys.readouterr().out.split()
    assert Path(where) == inbox / f"{bid}.tar.gz" and bundle_id(where) == bid
    assert list_inbox(inbox) == [Path(where)]
    assert [p.name for p in inbox.iterdir()] == [f"{bid}.tar.gz"]  # no temp file left behind
    assert submit(folder, inbox)[0] == bid  # deterministic: same folder, same id


def test_submit_cli_refuses_a_bad_folder(tmp_path, capsys):
    folder = _folder(tmp_path)
    frame = pd.read_parquet(folder / "runs.parquet")
    frame.loc[0, "energy_j"] = -1.0
    frame.to_parquet(folder / "runs.parquet", index=False)
    inbox = tmp_path / "inbox"
    assert cli_main(["submit", str(folder), "--inbox", str(inbox)]) == 1
    assert "runs.parquet: row 0, field energy_j" in capsys.readouterr().err
    assert list(inbox.iterdir()) == []


def test_submit_defaults_to_the_home_inbox(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))
    bid, where = submit(_folder(tmp_path))
    assert where == tmp_path / "home" / "submissions" / "inbox" / f"{bid}.tar.gz"


def test_pack_bundle_refuses_unknown_files(tmp_path):
    folder = _folder(tmp_path)
    (folder / "secrets.env").write_text("TOKEN=x")
    with pytest.raises(Exception, match="unknown file"):
        pack_bundle(folder, tmp_path / "b.tar.gz")


def test_list_inbox_skips_uploads_in_progress(tmp_path):
    for name in ("b.tar.gz", "a.zip", ".x.tar.gz.part", "notes.txt", "c.tgz"):
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in list_inbox(tmp_path)) == ["a.zip", "b.tar.gz", "c.tgz"]
    assert list_inbox(tmp_path / "missing") == []


def test_format_doc_lists_every_manifest_field():
    text = (REPO / "wattcounts_pipeline" / "submissions" / "FORMAT.md").read_text()
    missing = [f.name for f in manifest_fields() 
               if f.type != "mapping" and "[]" not in f.name and f"`{f.name}`" not in text]
    assert missing == []
