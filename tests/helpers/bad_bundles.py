"""A corpus of hostile bundles, built by code (no binary blobs): bombs, impossible physics, provenance that does
not hold together, collisions and injection. Each case builds an archive from the valid example bundle with one
fault and names the reason (file, row, field) ingestion must give. `tests/assets/test_trust.py` runs them all;
`benchmarks/ingest_memory.py` measures memory on the worst.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from wattcounts_pipeline.submissions.example import write_example_bundle
from wattcounts_pipeline.submissions.pack import pack_bundle

Build = Callable[[Path], Path]
CORPUS: dict[str, tuple[Build, str]] = {}


def case(name: str, expected: str, build: Build) -> None:
    assert name not in CORPUS, name
    CORPUS[name] = (build, expected)


def folder(tmp: Path, **kw) -> Path:
    return write_example_bundle(tmp / "src", **kw)


def pack(src: Path, tmp: Path) -> Path:
    return pack_bundle(src, tmp / "bundle.tar.gz")


def consistent(f: pd.DataFrame) -> pd.DataFrame:
    """Derived columns recomputed, so only the injected physics is wrong."""
    return f.assign(mean_power_w=f["energy_j"] / f["duration_s"],
                    energy_per_token_j=f["energy_j"] / f["output_tokens_total"],
                    energy_per_request_j=f["energy_j"] / f["num_requests"],
                    energy_net_j=f["energy_j"] - f["idle_power_w"] * f["duration_s"],
                    energy_per_token_net_j=(f["energy_j"] - f["idle_power_w"] * f["duration_s"])
                    / f["output_tokens_total"],
                    tokens_per_s=f["output_tokens_total"] / f["duration_s"])


def tables(fn: Callable[[dict[str, pd.DataFrame]], None], *, gpu: bool = True, fmt: str = "parquet",
           traces: bool = False, num_requests: int = 4) -> Build:
    """A bundle whose frames `fn` edits in place (keys runs, requests[, power_traces])."""
    def build(tmp: Path) -> Path:
        src = folder(tmp, gpu=gpu, fmt=fmt, traces=traces, num_requests=num_requests)
        frames = {p.stem: (pd.read_csv(p, keep_default_na=False) if p.suffix == ".csv" else pd.read_parquet(p))
                  for p in src.iterdir() if p.stem != "manifest"}
        fn(frames)
        for name, frame in frames.items():
            if fmt == "csv":
                frame.to_csv(src / f"{name}.csv", index=False)
            else:
                frame.to_parquet(src / f"{name}.parquet", index=False)
        return pack(src, tmp)
    return build


def manifest(fn: Callable[[dict], None], **kw) -> Build:
    def build(tmp: Path) -> Path:
        src = folder(tmp, **kw)
        doc = yaml.safe_load((src / "manifest.yaml").read_text())
        fn(doc)
        (src / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return pack(src, tmp)
    return build


def manifest_text(edit: Callable[[str], str]) -> Build:
    def build(tmp: Path) -> Path:
        src = folder(tmp)
        path = src / "manifest.yaml"
        path.write_text(edit(path.read_text()))
        return pack(src, tmp)
    return build


def raw_table(name: str, write: Callable[[Path], None], **kw) -> Build:
    """A bundle whose table file `name` is written by `write` (bombs built with pyarrow directly)."""
    def build(tmp: Path) -> Path:
        src = folder(tmp, **kw)
        for old in src.glob(f"{name.split('.')[0]}.*"):
            old.unlink()
        write(src / name)
        return pack(src, tmp)
    return build


def run_set(column: str, value, row: int = 0, derive: bool = False) -> Callable[[dict], None]:
    def fn(t: dict[str, pd.DataFrame]) -> None:
        f = t["runs"]
        if isinstance(value, str) and f[column].dtype != object:
            f[column] = f[column].astype(object)
        f.loc[row, column] = value
        if derive:
            t["runs"] = consistent(f)
    return fn


def scale_energy(factor: float) -> Callable[[dict], None]:
    """Every energy column multiplied by `factor` (units passed off as J), derived columns kept consistent."""
    def fn(t: dict[str, pd.DataFrame]) -> None:
        f = t["runs"]
        for c in ("energy_j", "gpu_energy_j", "cpu_energy_j", "dram_energy_j", "idle_power_w"):
            f[c] = pd.to_numeric(f[c], errors="coerce") * factor
        t["runs"] = consistent(f)
        t["requests"]["energy_j"] = t["requests"]["energy_j"] * factor
    return fn


# ---------------------------------------------------------------- decompression bombs in columnar files

def dictionary_bomb(rows: int, chars: int) -> Callable[[Path], None]:
    """A parquet of `rows` rows whose run_id is one `chars`-long string, dictionary- and RLE-encoded to KBs."""
    def write(path: Path) -> None:
        value = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["r" * chars]))
        pq.write_table(pa.table({"run_id": value, "t_s": pa.array(np.zeros(rows)),
                                 "domain": pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)),
                                                                          pa.array(["gpu"])),
                                 "power_w": pa.array(np.zeros(rows))}), path, compression="zstd")
    return write


case("parquet_dictionary_bomb", "power_traces.parquet: row 0, field run_id: 100000 characters, more than the 10000",
     raw_table("power_traces.parquet", dictionary_bomb(900_000, 100_000)))
case("parquet_dictionary_bomb_short_strings", "power_traces.parquet: column run_id: strings decode to more than",
     raw_table("power_traces.parquet", dictionary_bomb(900_000, 9_999)))
case("parquet_too_many_rows", "power_traces.parquet: 2000000 rows, more than the 1000000 allowed",
     raw_table("power_traces.parquet", dictionary_bomb(2_000_000, 3)))


def _wide(path: Path) -> None:
    pq.write_table(pa.table({f"c{i}": pa.array(np.zeros(10)) for i in range(200)}), path)


case("parquet_too_many_columns", "runs.parquet: 200 columns, more than the", raw_table("runs.parquet", _wide))


def _long_cell_csv(path: Path) -> None:
    path.write_text("run_id,domain,t_s,power_w\n" + "x" * 20_000 + ",gpu,0.0,100\n")


case("csv_long_cell", "power_traces.csv: row 0, field run_id: 20000 characters, more than the 10000 allowed",
     raw_table("power_traces.csv", _long_cell_csv))
def _many_csv_rows(path: Path) -> None:
    values = np.random.default_rng(0).random(1_100_000)  # random digits: compresses too little to be an archive bomb
    path.write_text("run_id,domain,t_s,power_w\n" + "".join(f"a,gpu,{v:.6f},1\n" for v in values))


case("csv_too_many_rows", "power_traces.csv: more than the 1000000 rows allowed",
     raw_table("power_traces.csv", _many_csv_rows))
case("csv_too_many_columns", "power_traces.csv: 300 columns, more than the",
     raw_table("power_traces.csv", lambda p: p.write_text(",".join(f"c{i}" for i in range(300)) + "\n")))
case("csv_duplicate_header", "power_traces.csv: duplicate column names ['t_s']",
     raw_table("power_traces.csv", lambda p: p.write_text("run_id,domain,t_s,t_s,power_w\na,gpu,0,0,1\n")))
case("csv_header_too_long", "power_traces.csv: header row longer than",
     raw_table("power_traces.csv", lambda p: p.write_text(np.random.default_rng(0).bytes(1 << 20).hex())))

# ---------------------------------------------------------------- impossible physics

case("zero_energy", "runs.parquet: row 0, field energy_j: 0.0 is not positive",
     tables(lambda t: (t["runs"].__setitem__("idle_power_w", 0.0), t["runs"].__setitem__("gpu_energy_j", 0.0),
                       t["runs"].__setitem__("cpu_energy_j", 0.0), t["runs"].__setitem__("dram_energy_j", 0.0),
                       t["requests"].__setitem__("energy_j", 0.0), run_set("energy_j", 0.0, derive=True)(t)),
           gpu=True))
case("energy_below_idle", "runs.parquet: row 1, field energy_j",
     tables(lambda t: (t["runs"].__setitem__("idle_power_w", t["runs"]["mean_power_w"] * 1.5),
                       t.__setitem__("runs", consistent(t["runs"])))))
def speed_up(factor: float) -> Callable[[dict], None]:
    """Every time and energy divided by `factor`: same power, impossibly many tokens a second."""
    def fn(t: dict[str, pd.DataFrame]) -> None:
        f = t["runs"]
        for c in ("duration_s", "energy_j", "gpu_energy_j", "cpu_energy_j", "dram_energy_j"):
            f[c] = pd.to_numeric(f[c], errors="coerce") / factor
        t["runs"] = consistent(f)
        for c in ("start_s", "ttft_s", "tpot_s", "e2e_s", "energy_j"):
            t["requests"][c] = t["requests"][c] / factor
    return fn


case("tokens_per_s_beyond_cpu", "runs.parquet: row 0, field tokens_per_s",
     tables(speed_up(2000.0), gpu=False, num_requests=400))
case("tokens_per_s_beyond_gpu", "runs.parquet: row 0, field tokens_per_s",
     tables(speed_up(2000.0), num_requests=400))


def _gpu_power(watts: float, limit: float | None) -> Callable[[dict], None]:
    def fn(t: dict[str, pd.DataFrame]) -> None:
        f = t["runs"]
        f["gpu_power_limit_w"] = limit
        f["gpu_energy_j"] = watts * f["duration_s"]
        f["energy_j"] = f["gpu_energy_j"] + f["cpu_energy_j"] + f["dram_energy_j"]
        t["runs"] = consistent(f)
        t["requests"]["energy_j"] = t["requests"]["energy_j"] * 0.1
    return fn


case("gpu_1400w_on_700w_card_no_limit", "runs.parquet: row 0, field gpu_energy_j",
     tables(_gpu_power(1400.0, None)))
case("gpu_limit_beyond_catalog", "runs.parquet: row 0, field gpu_power_limit_w: 2000.0 more than 1.5 x",
     tables(_gpu_power(500.0, 2000.0)))
case("energy_in_wh", "runs.parquet: row 0, field mean_power_w", tables(scale_energy(1 / 3600)))
case("energy_in_kj", "runs.parquet: row 0, field mean_power_w", tables(scale_energy(1 / 1000)))
case("cpu_energy_in_wh", "runs.csv: row 0, field mean_power_w", tables(scale_energy(1 / 3600), gpu=False, fmt="csv"))


def _rapl(watts: float) -> Callable[[dict], None]:
    def fn(t: dict[str, pd.DataFrame]) -> None:
        f = t["runs"]
        f["energy_method"] = "rapl"
        f["energy_flags"] = ""
        f["cpu_energy_j"] = watts * f["duration_s"]
        f["energy_j"] = f["cpu_energy_j"]
        t["runs"] = consistent(f)
    return fn


case("rapl_3000w", "runs.parquet: row 0, field energy_j", tables(_rapl(3000.0), gpu=False))
case("energy_less_than_domains", "runs.parquet: row 2, field energy_j: ",
     tables(lambda t: t["runs"].__setitem__("cpu_energy_j", t["runs"]["cpu_energy_j"] + [0, 0, 1e5])))


def _trace(watts: float, domain: str = "gpu", row: int = 0) -> Callable[[dict], None]:
    def fn(t: dict[str, pd.DataFrame]) -> None:
        t["power_traces"].loc[row, "power_w"] = watts
        t["power_traces"]["domain"] = t["power_traces"]["domain"].astype(object)
        t["power_traces"].loc[row, "domain"] = domain
    return fn


case("trace_4000w_gpu", "power_traces.parquet: row 0, field power_w: 4000.0 beyond", tables(_trace(4000.0), traces=True))
case("trace_2000w_one_gpu", "power_traces.parquet: row 3, field power_w: 2000.0 beyond",
     tables(_trace(2000.0, "gpu:0", 3), traces=True))
case("trace_cpu_2000w", "power_traces.parquet: row 1, field power_w: 2000.0 beyond",
     tables(_trace(2000.0, "cpu", 1), traces=True))
case("trace_unknown_domain", "power_traces.parquet: row 0, field domain: 'fan' is not gpu",
     tables(_trace(10.0, "fan"), traces=True))
for _i, _bad in enumerate([float("inf"), -float("inf")]):
    case(f"runs_energy_inf_{_i}", "runs.parquet: row 0, field energy_j: ", tables(run_set("energy_j", _bad)))
case("csv_energy_inf", "runs.csv: row 1, field energy_j: inf is not a finite number",
     tables(run_set("energy_j", "inf", row=1), fmt="csv"))
case("csv_energy_1e400", "runs.csv: row 0, field duration_s: inf is not a finite number",
     tables(run_set("duration_s", "1e400"), fmt="csv"))
case("csv_nan_literal", "runs.csv: row 0, field energy_j: 'nan' is not a number",
     tables(run_set("energy_j", "nan"), fmt="csv"))
case("parquet_nan_required", "runs.parquet: row 0, field energy_j",
     tables(run_set("energy_j", float("nan"))))
case("trace_inf", "power_traces.parquet: row 2, field power_w: inf is not a finite number",
     tables(lambda t: t["power_traces"].__setitem__("power_w", t["power_traces"]["power_w"].where(
         t["power_traces"].index != 2, float("inf"))), traces=True))
case("request_inf_energy", "requests.parquet: row 0, field energy_j: inf is not a finite number",
     tables(lambda t: t["requests"].__setitem__("energy_j", t["requests"]["energy_j"].where(
         t["requests"].index != 0, float("inf")))))
for _col in ("idle_power_w", "gpu_power_limit_w", "temperature_start_c", "sm_clock_mhz", "gpu_energy_j"):
    case(f"inf_{_col}", f"runs.parquet: row 1, field {_col}: inf is not a finite number",
         tables(run_set(_col, float("inf"), row=1)))
case("request_input_not_spec", "requests.parquet: row 0, field input_tokens: 129 differs from its spec's",
     tables(lambda t: (t["requests"].__setitem__("input_tokens", t["requests"]["input_tokens"] + np.eye(12, dtype=int)[0]),
                       t["runs"].__setitem__("input_tokens_total", t["runs"]["input_tokens_total"] + [1, 0, 0]))))
case("request_output_beyond_spec", "requests.parquet: row 4, field output_tokens: 65 exceeds its spec's",
     tables(lambda t: (t["requests"].__setitem__("output_tokens", t["requests"]["output_tokens"]
                                                 + np.eye(12, dtype=int)[4]),
                       t["runs"].__setitem__("output_tokens_total", t["runs"]["output_tokens_total"] + [0, 1, 0]),
                       t.__setitem__("runs", consistent(t["runs"])))))

# ---------------------------------------------------------------- provenance that does not hold together

case("manifest_limit_disagrees", "runs.parquet: row 0, field gpu_power_limit_w: 700.0 differs from manifest.yaml",
     manifest(lambda d: d["hardware"].__setitem__("gpu_power_limit_w", 400.0)))
case("manifest_limit_beyond_card", "manifest.yaml: field hardware.gpu_power_limit_w: 1900 W is more than",
     manifest(lambda d: d["hardware"].__setitem__("gpu_power_limit_w", 1900.0)))
case("manifest_nan_limit", "manifest.yaml: field hardware.gpu_power_limit_w: nan is not a finite number",
     manifest(lambda d: d["hardware"].__setitem__("gpu_power_limit_w", float("nan"))))
case("manifest_inf_memory", "manifest.yaml: field hardware.memory_gb: inf is not a finite number",
     manifest(lambda d: d["hardware"].__setitem__("memory_gb", float("inf"))))
case("manifest_nan_in_spec", "manifest.yaml: field specs[0].idle_s: nan is not a finite number",
     manifest(lambda d: d["specs"][0].__setitem__("idle_s", float("nan"))))
case("duplicate_consent_key", "manifest.yaml: duplicate key 'consent' (line",
     manifest_text(lambda s: s.replace("consent: true", "consent: false\nconsent: true")))
case("duplicate_nested_key", "manifest.yaml: duplicate key 'gpu_count' (line",
     manifest_text(lambda s: s.replace("  gpu_count: 8", "  gpu_count: 8\n  gpu_count: 1")))
case("software_version_int", "manifest.yaml: field software.vllm: expected string, got int",
     manifest(lambda d: d["software"].__setitem__("vllm", 11)))
case("software_version_list", "manifest.yaml: field software.vllm: expected string, got list",
     manifest(lambda d: d["software"].__setitem__("vllm", ["0.11"])))
for _i, _date in enumerate(["2025-13-45T25:61:61Z", "2025-02-30T12:00:00Z", "2025-06-02T12:00:00Zjunk",
                            "2025-06-02T12:00:00", "2999-01-01T00:00:00Z"]):
    case(f"bad_created_at_{_i}", "manifest.yaml: field created_at",
         manifest(lambda d, v=_date: d.__setitem__("created_at", v)))
for _i, _date in enumerate(["2025-13-45T25:61:61Z", "2025-02-30T10:00:00Z", "2025-06-01T24:00:00Z"]):
    case(f"bad_started_at_{_i}", f"runs.parquet: row 1, field started_at: {_date!r} is not a real ISO-8601",
         tables(run_set("started_at", _date, row=1)))
case("notes_5001", "manifest.yaml: field notes: ", manifest(lambda d: d.__setitem__("notes", "n" * 5001)))
case("notes_5000_plus_newline", "manifest.yaml: field notes: ",
     manifest(lambda d: d.__setitem__("notes", "n" * 5000 + "\n")))
case("name_201", "manifest.yaml: field contributor.name: ",
     manifest(lambda d: d["contributor"].__setitem__("name", "a" * 201)))
case("name_trailing_newline", "manifest.yaml: field contributor.name: ",
     manifest(lambda d: d["contributor"].__setitem__("name", "Ada\n")))
case("affiliation_600kb", "manifest.yaml: field contributor.affiliation: 600000 characters, more than the 1000",
     manifest(lambda d: d["contributor"].__setitem__("affiliation", "a" * 600_000)))
case("software_600kb", "manifest.yaml: field software.vllm: 600000 characters",
     manifest(lambda d: d["software"].__setitem__("vllm", "1" * 600_000)))
case("hardware_mixed_in_configuration", "runs.parquet: row 1, field hardware_id: 'other box x8' differs",
     tables(run_set("hardware_id", "other box x8", row=1)))
case("run_counted_twice", "runs.parquet: row 2, field energy_j: same measured values as row 0",
     tables(lambda t: t["runs"].loc.__setitem__((2, ["energy_j", "duration_s", "gpu_energy_j", "cpu_energy_j",
                                                     "dram_energy_j", "mean_power_w", "energy_net_j",
                                                     "energy_per_token_j", "energy_per_token_net_j",
                                                     "energy_per_request_j", "tokens_per_s"]),
                                                t["runs"].loc[0, ["energy_j", "duration_s", "gpu_energy_j",
                                                                  "cpu_energy_j", "dram_energy_j", "mean_power_w",
                                                                  "energy_net_j", "energy_per_token_j",
                                                                  "energy_per_token_net_j", "energy_per_request_j",
                                                                  "tokens_per_s"]].to_numpy())))

# ---------------------------------------------------------------- injection into what we publish

HOSTILE = {
    "ansi": "\x1b[2J\x1b[31mpwned",
    "rtl_override": "abc\u202eexe.txt",
    "zero_width": "ad\u200bmin",
    "bell": "ding\x07",
    "c1_control": "x\x9by",
    "bom": "\ufeffname",
    "line_separator": "a\u2028b",
}
for _key, _text in HOSTILE.items():
    case(f"name_{_key}", "manifest.yaml: field contributor.name: holds control or bidi character",
         manifest(lambda d, v=_text: d["contributor"].__setitem__("name", v)))
    case(f"notes_{_key}" if _key != "line_separator" else "notes_line_separator",
         "manifest.yaml: field notes: holds control or bidi character",
         manifest(lambda d, v=_text: d.__setitem__("notes", "fine\n" + v)))
    case(f"gpu_name_{_key}", "manifest.yaml: field hardware.gpu_name: holds control or bidi character",
         manifest(lambda d, v=_text: d["hardware"].__setitem__("gpu_name", v)))
    case(f"runs_cell_{_key}", "runs.parquet: row 1, field framework_version: holds control or bidi character",
         tables(run_set("framework_version", _text, row=1)))
    case(f"csv_cell_{_key}", "runs.csv: row 0, field software_json: holds control or bidi character",
         tables(run_set("software_json", _text), fmt="csv"))
case("spec_model_ansi", "manifest.yaml: field specs[0].model.name: holds control or bidi character",
     manifest(lambda d: d["specs"][0]["model"].__setitem__("name", "llama\x1b[0m")))
case("runs_cell_600kb", "runs.parquet: row 0, field software_json: 600000 characters, more than the 10000",
     tables(run_set("software_json", "{" + "a" * 599_998 + "}")))
