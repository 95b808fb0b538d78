"""Serving sweeps' plain library code: specs, length mixes, synthetic prompts, the load generator's timing, the
server-metrics parser and poller, load-point rows, curve answers and the curve plot. The real server runs in
tests/e2e/test_serving_sweep.py."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import REPO
from wattcounts_pipeline.backends.base import RequestResult
from wattcounts_pipeline.core.errors import BackendError, SpecError
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.meters.base import EnergyReading
from wattcounts_pipeline.model.curves import answer_from_curves, curve_at
from wattcounts_pipeline.serving.loadgen import Outcome, closed_loop, is_fatal, open_loop, poisson_arrivals
from wattcounts_pipeline.serving.mixes import SHAREGPT_LENGTHS, LengthPair, read_length_list, workload_lengths
from wattcounts_pipeline.serving.rows import PointContext, is_saturated, load_point_row
from wattcounts_pipeline.serving.server_metrics import MetricsPoller, gauges, parse_prometheus, summarize
from wattcounts_pipeline.serving.spec import LoadPlan, ServingWorkload, load_serving, parse_serving
from wattcounts_pipeline.serving.synthetic import synthetic_prompts

DEFAULT = REPO / "experiments" / "default.yaml"
MODELS = {"m": {"source": "gguf:/nonexistent.gguf", "architecture": "gemma3"}}


def _doc(sweep: dict | None = None, workloads: dict | None = None) -> dict:
    base = {"model": "m", "framework": "llamacpp-server", "quantization": "Q4_K_M", "workload": "w",
            "load": {"mode": "open", "rates": [1.0, 2.0], "duration_s": 5}}
    return {"models": MODELS, "serving": {"workloads": workloads or {"w": {"input_tokens": 32, "output_tokens": 8}},
                                          "sweeps": [{**base, **(sweep or {})}]}}


# --- specs -------------------------------------------------------------------------------------------------------

def test_default_experiment_has_a_short_gemma_sweep_and_the_three_scenarios() -> None:
    doc = __import__("yaml").safe_load(DEFAULT.read_text())
    assert {"chat", "batch-summarization", "rag"} <= set(doc["serving"]["workloads"])
    (spec,) = load_serving(DEFAULT)
    assert spec.model.source.startswith("pypi-gguf:gemma3") and spec.quantization == "Q4_K_M"
    assert spec.framework == "llamacpp-server" and spec.workload.mix == "sharegpt"
    assert len(spec.load.levels()) * spec.load.duration_s <= 30  # short on 2 cores


def test_scenario_workloads_take_their_name_and_keys_are_stable() -> None:
    workloads = {"chat": {"input_tokens": 512, "output_tokens": 256}, "w": {"input_tokens": 32}}
    a = parse_serving(_doc({"workload": "chat"}, workloads), "x")[0]
    assert a.scenario == "chat" and parse_serving(_doc(workloads=workloads), "x")[0].scenario == ""
    assert a.key == parse_serving(_doc({"workload": "chat"}, workloads), "other-name")[0].key
    assert a.key != parse_serving(_doc({"workload": "chat", "slots": 2}, workloads), "x")[0].key
    assert a.key.startswith("m-llamacpp-server-q4_k_m-chat-open-")


@pytest.mark.parametrize(("sweep", "message"), [
    ({"lod": {}}, "serving.sweeps[0].lod: unknown key; did you mean 'load'?"),
    ({"load": {"mode": "closed", "rates": [1.0]}}, "takes users, not rates"),
    ({"load": {"mode": "open", "rates": [0.0]}}, "finite number > 0"),
    ({"load": {"mode": "closed", "users": [1.5]}}, "whole numbers"),
    ({"workload": "nope"}, "unknown serving workload 'nope'"),
    ({"framework": "tgi"}, "framework must be one of"),
    ({"slo": {"tpot_s": -1}}, "slo.tpot_s must be"),
])
def test_bad_sweeps_are_refused_by_name(tmp_path: Path, sweep: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(_doc(sweep)))
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        load_serving(path)
    assert str(path) in str(err.value)


def test_auto_levels_grow_geometrically() -> None:
    assert LoadPlan(mode="open", start=0.25, factor=2, max_points=4).levels() == [0.25, 0.5, 1.0, 2.0]
    assert LoadPlan(mode="closed", start=1, factor=3, max_points=3).levels() == [1.0, 3.0, 9.0]


# --- mixes and prompts -------------------------------------------------------------------------------------------

def test_sharegpt_mix_is_seeded_and_clipped() -> None:
    w = ServingWorkload("s", mix="sharegpt", output_tokens=16, max_input_tokens=100, num_requests=50, seed=3)
    pairs = workload_lengths(w)
    assert pairs == workload_lengths(w) and pairs != workload_lengths(ServingWorkload(**{**w.__dict__, "seed": 4}))
    assert len(pairs) == 50 and max(p.input_tokens for p in pairs) == 100
    assert {p.output_tokens for p in pairs} == {16} and len({p.input_tokens for p in pairs}) > 10
    assert workload_lengths(ServingWorkload("c", input_tokens=512, output_tokens=256, num_requests=3)) == \
        [LengthPair(512, 256)] * 3


def test_shipped_length_list_has_provenance_and_no_text() -> None:
    doc = json.loads(SHAREGPT_LENGTHS.read_text())
    assert doc["source_sha256"] == "68bf784305d30824de71732c59e53ebb00780e4fd136b0382cd7dee7f08ea5d3"
    assert "not redistributed" in doc["licence"] and set(doc) == {
        "source", "source_sha256", "tokenizer", "counts_include_bos", "licence", "input_tokens"}
    assert len(read_length_list(SHAREGPT_LENGTHS)) == 1000


def test_bad_length_list_names_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "lengths.json"
    path.write_text(json.dumps({"input_tokens": [5, "x"]}))
    with pytest.raises(SpecError, match=r"lengths.json: input_tokens\[1\]: expected a whole number"):
        read_length_list(path)


def test_synthetic_prompts_have_exact_lengths_and_no_shared_prefix() -> None:
    vocab: dict[str, int] = {}

    def tokenize(text: str) -> list[int]:
        return [vocab.setdefault(word, len(vocab) + 10) for word in text.split()]

    pairs = [LengthPair(n, 4) for n in (5, 64, 300, 64)]
    prompts = synthetic_prompts(pairs, tokenize, [1], seed=0)
    assert [len(p.token_ids) for p in prompts] == [5, 64, 300, 64]
    assert all(p.token_ids[0] == 1 and p.max_new_tokens == 4 for p in prompts)
    assert prompts[1].token_ids[:8] != prompts[3].token_ids[:8]
    assert prompts == synthetic_prompts(pairs, tokenize, [1], seed=0)


# --- the load generator ------------------------------------------------------------------------------------------

def _sleeper(service_s: float, in_flight: list[int], peak: list[int]) -> object:
    lock = threading.Lock()

    def send(index: int, t0: float) -> RequestResult:
        start = time.perf_counter()
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(service_s)
        with lock:
            in_flight[0] -= 1
        return RequestResult(input_tokens=10, output_tokens=5, start_s=start - t0, ttft_s=service_s / 5,
                             e2e_s=time.perf_counter() - start)
    return send


def test_poisson_arrivals_are_seeded_and_keep_their_rate() -> None:
    a = poisson_arrivals(20.0, 50.0, 1, seed="0/20")
    assert a == poisson_arrivals(20.0, 50.0, 1, seed="0/20") and a != poisson_arrivals(20.0, 50.0, 1, seed="1/20")
    assert 900 < len(a) < 1100 and a == sorted(a)
    assert len(poisson_arrivals(0.01, 1.0, 3, seed="x")) == 3  # a slow rate still offers min_requests


def test_closed_loop_keeps_n_users_busy_then_stops() -> None:
    in_flight, peak = [0], [0]
    outcomes = closed_loop(_sleeper(0.05, in_flight, peak), users=3, duration_s=0.3)
    assert peak[0] == 3 and in_flight[0] == 0
    assert 12 <= len(outcomes) <= 24 and [o.index for o in outcomes] == list(range(len(outcomes)))
    assert all(o.wait_s < 0.02 for o in outcomes)  # a closed-loop user never waits for a connection


def test_open_loop_counts_the_wait_for_a_connection_in_latency() -> None:
    in_flight, peak = [0], [0]
    outcomes = open_loop(_sleeper(0.1, in_flight, peak), arrivals=[0.0, 0.0, 0.0], max_in_flight=1)
    assert peak[0] == 1
    assert [round(o.wait_s, 1) for o in outcomes] == [0.0, 0.1, 0.2]
    assert outcomes[2].e2e_s == pytest.approx(0.3, abs=0.05)


def test_a_fatal_error_stops_offering_load() -> None:
    calls = []

    def send(index: int, t0: float) -> RequestResult:
        calls.append(index)
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as exc:
            raise BackendError("openai: POST failed") from exc

    outcomes = open_loop(send, arrivals=[0.0, 0.05, 0.1, 0.15], max_in_flight=4)
    assert calls == [0] and outcomes[0].fatal and len(outcomes) == 1
    assert not is_fatal(BackendError("answered 503"))  # an error status is a failed request, not a dead server


# --- server metrics ----------------------------------------------------------------------------------------------

LLAMA_METRICS = """# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 3
llamacpp:requests_deferred 5
llamacpp:n_busy_slots_per_decode 2.5
llamacpp:prompt_tokens_seconds nan
"""
VLLM_METRICS = """vllm:num_requests_running{engine="0",model_name="a b"} 7.0
vllm:num_requests_waiting{engine="0",model_name="a b"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="a b"} 0.25
"""


def test_prometheus_gauges_of_both_servers() -> None:
    assert gauges(parse_prometheus(LLAMA_METRICS)) == {"running": 3.0, "queue": 5.0, "busy_slots": 2.5}
    assert gauges(parse_prometheus(VLLM_METRICS)) == {"running": 7.0, "queue": 2.0, "kv_cache": 0.25}
    summary = summarize([{"running": 2, "queue": 0, "busy_slots": 2}, {"running": 4, "queue": 6, "busy_slots": 4}],
                        slots=4, source="u")
    assert summary["server_queue_mean"] == 3 and summary["server_queue_max"] == 6
    assert summary["server_batch_occupancy"] == 0.75 and summary["server_kv_cache_usage_mean"] is None
    assert summarize([], 1, "u")["server_metrics_source"] is None


@pytest.fixture()
def metrics_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = LLAMA_METRICS.encode() if self.path == "/metrics" else b"no"
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_poller_reads_a_live_endpoint_and_gives_up_on_404(metrics_server: str) -> None:
    poller = MetricsPoller(metrics_server + "/metrics", interval_s=0.05).start()
    time.sleep(0.3)
    poller.stop()
    assert len(poller.samples) >= 3 and poller.samples[0]["queue"] == 5.0
    missing = MetricsPoller(metrics_server + "/nothing", interval_s=0.05).start()
    time.sleep(0.2)
    missing.stop()
    assert missing.samples == [] and "404" in missing.unsupported


# --- rows --------------------------------------------------------------------------------------------------------

def _outcome(i: int, ttft: float, e2e: float, out: int = 11, wait: float = 0.0) -> Outcome:
    return Outcome(i, due_s=i * 1.0, result=RequestResult(100, out, start_s=i * 1.0 + wait, ttft_s=ttft, e2e_s=e2e))


def test_load_point_row_counts_the_whole_window_and_checks_the_slo() -> None:
    (spec,) = parse_serving(_doc({"slo": {"ttft_s": 0.5, "tpot_s": 0.1}}), "x")
    outcomes = [_outcome(0, 0.2, 1.2), _outcome(1, 0.3, 2.3), _outcome(2, 0.2, 1.2, wait=0.5),
                Outcome(3, 3.0, error="answered 503")]
    reading = EnergyReading("k", duration_s=10.0, energy_j={"cpu:estimate": 200.0}, method="estimate",
                            flags=("estimate",))
    ctx = PointContext(spec, 0, 1.0, idle_power_w=5.0, server="llama_cpp.server", framework_version="0.3.36",
                       engine_args={})
    row = load_point_row(ctx, outcomes, reading, summarize([], 1, ""))
    assert row["energy_per_request_j"] == pytest.approx(200 / 3)
    assert row["energy_per_request_net_j"] == pytest.approx((200 - 50) / 3)
    assert row["energy_per_output_token_j"] == pytest.approx(200 / 33)
    assert row["achieved_rate_per_s"] == pytest.approx(0.3) and row["requests_failed"] == 1
    # request 1: TPOT 0.2 s misses 0.1; request 2: its 0.5 s wait puts TTFT at 0.7 s, over 0.5
    assert row["slo_attainment"] == pytest.approx(1 / 4) and row["goodput_per_s"] == pytest.approx(0.1)
    assert row["ttft_p50_s"] == pytest.approx(0.3) and row["offered_rate_per_s"] == 1.0 and row["users"] is None
    checked = validate_table("load_points", pd.DataFrame([row]))
    assert checked.ok, checked.failures
    assert row["host_calibration_ns"] > 0 and row["cpu_set"] and row["cpu_count"] >= 1  # the host, as run rows have it
    broken = pd.DataFrame([{**row, "energy_per_request_j": 1.0}])
    assert "energy_per_request_j" in set(validate_table("load_points", broken).failures["column"])
    with pytest.raises(BackendError, match="none of 1 requests completed"):
        load_point_row(ctx, [Outcome(0, 0.0, error="answered 500")], reading, {})


def test_saturation_is_throughput_that_stopped_rising() -> None:
    assert not is_saturated(None, {"achieved_rate_per_s": 1.0}, 0.05)
    assert not is_saturated({"achieved_rate_per_s": 1.0}, {"achieved_rate_per_s": 1.2}, 0.05)
    assert is_saturated({"achieved_rate_per_s": 1.0}, {"achieved_rate_per_s": 1.03}, 0.05)


# --- curves ------------------------------------------------------------------------------------------------------

def _curve(mode: str, levels: list[float], rates: list[float], saturated: list[bool]) -> pd.DataFrame:
    """TEST FIXTURE: load points of a made-up curve (no measurement)."""
    rows = []
    for i, (level, rate, sat) in enumerate(zip(levels, rates, saturated)):
        rows.append({"sweep_id": f"s-{mode}", "point_index": i, "model": "gemma3-270m", "architecture": "gemma3",
                     "quantization": "Q4_K_M", "framework": "llamacpp-server", "server": "llama_cpp.server",
                     "slots": 1, "hardware_id": "Intel(R) Xeon(R) Processor (2 CPUs)", "workload": "chat",
                     "scenario": "chat", "load_mode": mode, "users": level if mode == "closed" else None,
                     "offered_rate_per_s": None if mode == "closed" else level, "achieved_rate_per_s": rate,
                     "energy_per_request_j": 100.0 / (i + 1), "energy_per_request_net_j": 80.0 / (i + 1),
                     "energy_per_output_token_j": 0.4 / (i + 1), "ttft_p50_s": 0.5 * (i + 1),
                     "ttft_p90_s": 0.6 * (i + 1), "tpot_p50_s": 0.03, "tpot_p90_s": 0.04, "e2e_p50_s": 10.0 * (i + 1),
                     "e2e_p90_s": 11.0 * (i + 1), "mean_power_w": 20.0, "idle_power_w": 4.0,
                     "output_tokens_total": 256 * 4, "requests_completed": 4, "saturated": sat,
                     "gpu_name": None, "gpu_count": 0, "cpu_model": "Intel(R) Xeon(R) Processor"})
    return pd.DataFrame(rows)


def test_curve_interpolates_inside_and_uses_littles_law_beyond() -> None:
    curve = _curve("closed", [1, 2, 4], [0.1, 0.1, 0.1], [False, True, True])
    inside = curve_at(curve, 3, ttft_slo_s=10, tpot_slo_s=0.1)
    assert inside.how == "interpolated" and "between 2 and 4 users" in inside.note
    assert inside.energy_per_request_j == pytest.approx((50 + 100 / 3) / 2)
    beyond = curve_at(curve, 30, ttft_slo_s=10, tpot_slo_s=0.1)
    assert beyond.how == "extrapolated" and "Little's law" in beyond.note and "saturated" in beyond.note
    assert beyond.e2e_p90_s == pytest.approx(33.0 + (30 - 4) / 0.1)  # each added user waits one service time
    assert beyond.energy_per_request_j == pytest.approx(100 / 3) and not beyond.meets_slo
    assert curve_at(curve, 2, 10, 0.1).how == "measured"


def test_open_loop_beyond_capacity_is_unservable_and_below_spreads_idle() -> None:
    curve = _curve("open", [0.5, 1.0], [0.5, 0.8], [False, False])
    over = curve_at(curve, 2.0, None, None)
    assert over.how == "unservable" and not over.meets_slo and "queue grows" in over.note
    below = curve_at(curve, 0.25, None, None)
    assert below.how == "extrapolated"
    assert below.energy_per_request_j == pytest.approx(80.0 + 4.0 / 0.25)  # net held, idle over fewer requests


def test_answers_match_scenario_mode_and_hardware() -> None:
    frame = pd.concat([_curve("closed", [1, 2], [0.1, 0.1], [False, True]),
                       _curve("open", [0.5], [0.5], [False])])
    answers = answer_from_curves(frame, "chat", "cpu-x86-server", users=30, rate_per_s=None, ttft_slo_s=1.0,
                                 tpot_slo_s=0.1)
    assert [a.load_mode for a in answers] == ["closed"]
    assert answer_from_curves(frame, "chat", "H100-SXM", 30, None, 1.0, 0.1) == []
    assert answer_from_curves(frame, "rag", "cpu-x86-server", 30, None, 1.0, 0.1) == []


def test_curve_plot_draws_each_sweep_the_slo_line_and_the_saturation_point() -> None:
    from wattcounts_pipeline.hub.figures import load_curve_axes

    frame = pd.concat([_curve("closed", [1, 2, 4], [0.1, 0.2, 0.2], [False, False, True]),
                       _curve("open", [0.5, 1.0], [0.5, 0.8], [False, False])]).assign(slo_tpot_s=0.1)
    energy_ax, tpot_ax = load_curve_axes(frame).axes
    drawn = [line for line in energy_ax.get_lines() if line.get_linestyle() != "None"]
    assert len(drawn) == 2 and list(drawn[0].get_xdata()) == [0.1, 0.2, 0.2]
    rings = [line for line in energy_ax.get_lines() if line.get_linestyle() == "None"]
    assert len(rings) == 1 and list(rings[0].get_xdata()) == [0.2]
    assert any(list(line.get_ydata()) == [0.1, 0.1] for line in tpot_ax.get_lines())  # the SLO line
    assert "p90 TPOT" in tpot_ax.get_ylabel() and "J/request" in energy_ax.get_ylabel()


def test_native_llama_server_gets_a_slot_per_user_and_its_metrics(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from wattcounts_pipeline.serving.servers import ServingTarget, engine_args_for

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("WATTCOUNTS_LLAMA_SERVER", "/opt/llama/bin/llama-server")
    doc = _doc({"engine_args": {"server": "llama-server", "n_gpu_layers": 99}, "slots": 16},
               {"w": {"input_tokens": 512, "output_tokens": 256}})
    doc["models"]["m"]["source"] = f"gguf:{gguf}"
    (spec,) = parse_serving(doc, "x")
    argv, health = ServingTarget(spec, 512, 256).backend._native_argv()
    assert argv[0] == "/opt/llama/bin/llama-server" and "--metrics" in argv and health == "/health"
    assert argv[argv.index("-np") + 1] == "16" and argv[argv.index("-c") + 1] == str(16 * (512 + 256 + 16))
    assert argv[argv.index("-ngl") + 1] == "99"
    python_server = parse_serving(_doc({"engine_args": {"n_ctx": 256}}, {"w": {"input_tokens": 512}}), "x")[0]
    with pytest.raises(SpecError, match="n_ctx 256 cannot hold"):
        engine_args_for(python_server, 512, 256)


def test_vllm_sweeps_run_its_openai_server_with_a_sequence_per_slot(tmp_path: Path) -> None:
    from wattcounts_pipeline.backends.vllm_backend import VLLMBackend
    from wattcounts_pipeline.serving.servers import ServingTarget, engine_args_for

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    doc = _doc({"framework": "vllm", "quantization": "F32", "slots": 8, "engine_args": {"enforce_eager": True}},
               {"w": {"input_tokens": 128, "output_tokens": 16}})
    doc["models"]["m"]["source"] = f"gguf:{gguf}"
    (spec,) = parse_serving(doc, "x")
    assert engine_args_for(spec, 128, 16) == {"max_model_len": 128 + 16 + 16, "max_num_seqs": 8,
                                              "enforce_eager": True, "mode": "server"}
    target = ServingTarget(spec, 128, 16)
    assert isinstance(target.backend, VLLMBackend) and target.backend.mode == "server"
    assert target.backend.engine["max_num_seqs"] == 8 and target.server_name == "vllm"
    assert not target.alive()  # nothing started yet: a sweep never offers load to a server that is not up
    offline = parse_serving(_doc({"framework": "vllm", "engine_args": {"mode": "offline"}}), "x")[0]
    with pytest.raises(SpecError, match="vllm runs as a server here"):
        engine_args_for(offline, 128, 16)


def test_the_schema_the_spec_and_the_recommender_agree_on_their_words() -> None:
    from wattcounts_pipeline.core.contracts import load_contract
    from wattcounts_pipeline.core.vocab import FRAMEWORKS
    from wattcounts_pipeline.model.recommendation import SCENARIOS
    from wattcounts_pipeline.serving import spec as serving_spec

    allowed = {c.name: c.allowed for c in load_contract("load_points").columns}
    assert allowed["framework"] == serving_spec.SERVING_FRAMEWORKS and set(serving_spec.SERVING_FRAMEWORKS) <= set(
        FRAMEWORKS)
    assert allowed["mix"] == serving_spec.MIXES and allowed["load_mode"] == serving_spec.LOAD_MODES
    assert allowed["scenario"] == serving_spec.SCENARIO_NAMES == tuple(SCENARIOS)


def test_gpu_3x2_file_has_six_closed_chat_sweeps_of_three_shapes_and_two_formats() -> None:
    specs = load_serving(REPO / "experiments" / "serving" / "gpu_serving_3x2.yaml")
    assert len(specs) == 6 and len({s.key for s in specs}) == 6
    assert {(s.model.name, s.quantization) for s in specs} == {
        (m, q) for m in ("llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.3") for q in ("Q4_K_M", "Q8_0")}
    for s in specs:
        assert s.engine_kwargs == {"server": "llama-server", "n_gpu_layers": 99} and s.scenario == "chat"
        assert (s.workload.input_tokens, s.workload.output_tokens) == (512, 256)
        assert s.load.mode == "closed" and len(s.load.levels()) >= 5 and s.load.duration_s >= 10
        assert max(s.load.levels()) > s.slots  # the last level queues: past saturation by construction


def test_serving_sweep_script_selects_and_skips_recorded_sweeps(tmp_path: Path) -> None:
    from benchmarks.serving_sweep import done_sweeps, select

    specs = load_serving(REPO / "experiments" / "serving" / "gpu_serving_3x2.yaml")
    assert [s.quantization for s in select(specs, "q4_k_m")] == ["Q4_K_M"] * 3
    assert [s.model.name for s in select(specs, " Qwen , MISTRAL-7b-v0.3-llamacpp-server-q8_0")] == [
        "qwen2.5-7b", "qwen2.5-7b", "mistral-7b-v0.3"]  # file order kept
    assert select(specs, "") == specs and select(specs, "nothing-like-it") == []
    a, b, c = (s.key for s in specs[:3])
    (tmp_path / "call1" / "serving").mkdir(parents=True)
    (tmp_path / "call1" / "serving" / "serving_x_h200.jsonl").write_text(
        json.dumps({"sweep_id": a, "gpu_name": "NVIDIA H200"}) + "\n"
        + json.dumps({"sweep_id": b, "gpu_name": "NVIDIA H100 80GB HBM3"}) + "\n" + '{"sweep_id": "' + c)  # cut line
    (tmp_path / "load_points.jsonl").write_text(json.dumps({"sweep_id": c, "gpu_name": "NVIDIA H200"}) + "\n")
    assert done_sweeps([tmp_path], "NVIDIA H200") == {a}  # other card, cut line, per-point files: not done
    assert done_sweeps([tmp_path], "NVIDIA H100 80GB HBM3") == {b}
    assert done_sweeps([tmp_path / "missing"], "NVIDIA H200") == set()
    (tmp_path / "serving_cpu.jsonl").write_text(json.dumps({"sweep_id": c, "gpu_name": None,
                                                            "hardware_id": "X (2 CPUs)"}))
    assert done_sweeps([tmp_path], None, "X (2 CPUs)") == {c} and done_sweeps([tmp_path], None, "Y (2 CPUs)") == set()


def test_recorded_gpu_sweeps_are_read_validated_and_replaced_whole_by_a_sweep_measured_here(tmp_path: Path) -> None:
    from wattcounts_pipeline.serving.store import merge_load_points, recorded_load_points

    recorded = recorded_load_points(sorted((REPO / "data" / "measurements").iterdir()))
    assert validate_table("load_points", recorded, source="data/measurements").ok
    h100 = recorded[recorded["gpu_name"] == "NVIDIA H100 80GB HBM3"]
    assert len(h100) == 36 and h100["sweep_id"].nunique() == 6  # 3 shapes x Q4_K_M/Q8_0, 6 levels each
    one = h100["sweep_id"].iloc[0]
    here = h100[h100["sweep_id"] == one].head(2).assign(energy_per_request_j=1.0)  # "measured here" again
    merged = merge_load_points(here, h100)
    assert len(merged) == 2 + 30 and (merged.loc[merged["sweep_id"] == one, "energy_per_request_j"] == 1.0).all()
    other_machine = here.assign(hardware_id="1x NVIDIA H200")  # another machine's sweep of the key replaces nothing
    assert len(merge_load_points(other_machine, h100)) == 2 + 36
    broken = tmp_path / "call"
    broken.mkdir()
    (broken / "serving_x.jsonl").write_text('{"sweep_id": "a"}\n{not json\n')
    with pytest.raises(SpecError, match=r"serving_x.jsonl: line 2: not valid JSON"):
        recorded_load_points([broken])


def test_shipped_load_curves_are_the_recorded_ones_and_recommend_reads_them(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from wattcounts_pipeline.model.curves import measured_answers
    from wattcounts_pipeline.serving.store import SHIPPED, read_load_points, recorded_load_points

    recorded = recorded_load_points(sorted((REPO / "data" / "measurements").iterdir()))
    shipped = read_load_points(SHIPPED)  # scripts/ship_predictor.py writes it; stale if data/ changed without it
    assert validate_table("load_points", shipped, source=str(SHIPPED)).ok  # recommend reads it without Pandera
    key = ["sweep_id", "hardware_id", "point_index"]
    assert recorded.sort_values(key)[key].values.tolist() == shipped.sort_values(key)[key].values.tolist()
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path))  # no sweep of this machine: the shipped ones answer
    answers = measured_answers(None, "chat", "H100-SXM", 30, None, 1.0, 0.1)
    assert len(answers) == 6 and {a.quantization for a in answers} == {"Q4_K_M", "Q8_0"}
    assert {a.how for a in answers} == {"interpolated"}


def test_curve_answers_carry_their_setups_known_quality_and_a_floor_holds_them(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from wattcounts_pipeline.model.curves import measured_answers, with_quality

    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path))
    answers = measured_answers(None, "chat", "H100-SXM", 8, None, 1.0, 0.1)  # the shipped H100 sweeps, all meet the SLO
    known = pd.DataFrame([
        {"architecture": "Llama-3.1-8B", "quantization": "Q4_K_M", "framework": "llamacpp-server",
         "quality_acc_mean": 0.72, "quality_source": "derived"},
        {"architecture": "Qwen2.5-7B", "quantization": "Q4_K_M", "framework": "llamacpp-server",
         "quality_acc_mean": 0.55, "quality_source": "derived"},
        {"architecture": "Mistral-7B", "quantization": "Q4_K_M", "framework": "llamacpp-server",
         "quality_acc_mean": 0.9, "quality_source": "predicted"}])  # a source the user did not trust
    held = with_quality(answers, known, ("measured", "published", "derived"), 0.6)
    ok = [(a.model, a.quantization) for a in held if a.meets_slo and a.meets_quality]
    assert ok == [("llama-3.1-8b", "Q4_K_M")] and (held[0].model, held[0].quality_acc_mean) == ("llama-3.1-8b", 0.72)
    by = {(a.model, a.quantization): a for a in held}
    assert by[("qwen2.5-7b", "Q4_K_M")].quality_acc_mean == 0.55 and not by[("qwen2.5-7b", "Q4_K_M")].meets_quality
    assert by[("mistral-7b-v0.3", "Q4_K_M")].quality_acc_mean is None  # untrusted source: no quality, no floor met
    assert all(a.meets_quality for a in with_quality(answers, known, ("derived",), None))  # no floor asked


def test_this_machines_sweeps_are_checked_once_per_content_and_a_bad_row_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wattcounts_pipeline.model.curves import measured_answers
    from wattcounts_pipeline.serving.store import ROWS, SHIPPED, read_load_points

    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path))
    rows = read_load_points(SHIPPED)
    one = rows[rows["sweep_id"] == rows["sweep_id"].iloc[0]].assign(hardware_id="1x NVIDIA H100 (here)")
    sweep = tmp_path / "serving" / "a-sweep"
    sweep.mkdir(parents=True)
    (sweep / ROWS).write_text(one.to_json(orient="records", lines=True))
    marks = tmp_path / "cache" / "valid_load_points"
    first = measured_answers(None, "chat", "H100-SXM", 8, None, 1.0, 0.1)
    assert len(list(marks.iterdir())) == 1  # checked, and marked as checked
    second = measured_answers(None, "chat", "H100-SXM", 8, None, 1.0, 0.1)  # unchanged: the mark, no Pandera
    assert [a.energy_per_request_j for a in first] == [a.energy_per_request_j for a in second]
    bad = one.copy()
    bad.loc[bad.index[1], "energy_per_request_j"] = -5.0
    (sweep / ROWS).write_text(bad.to_json(orient="records", lines=True))
    with pytest.raises(SpecError, match=r"energy_per_request_j"):
        measured_answers(None, "chat", "H100-SXM", 8, None, 1.0, 0.1)
    assert len(list(marks.iterdir())) == 1  # a failed check marks nothing
