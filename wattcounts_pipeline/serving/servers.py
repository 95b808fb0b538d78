"""The server a sweep measures: started here (llama.cpp: llama-cpp-python's server, or the native `llama-server`
named by $WATTCOUNTS_LLAMA_SERVER with `--metrics` on; vLLM's OpenAI server under $WATTCOUNTS_VLLM_PYTHON), or an
OpenAI-compatible endpoint someone else runs.

It reuses the batch backends (backends/llamacpp_server.py, vllm_backend.py, openai_compat.py) for starting, tokenizing
and the streaming client, and adds what a sweep needs: is the process alive, its log tail when a point fails,
and where its Prometheus gauges are.
"""

from __future__ import annotations

import contextlib
import subprocess
import urllib.parse
from typing import Any

from wattcounts_pipeline.backends.base import Prompt, RequestResult
from wattcounts_pipeline.backends.llamacpp_server import LlamaCppServerBackend
from wattcounts_pipeline.backends.openai_compat import Completion, CompletionClient, OpenAICompatBackend
from wattcounts_pipeline.backends.server import ManagedServer
from wattcounts_pipeline.backends.vllm_backend import VLLMBackend
from wattcounts_pipeline.backends.weights import resolve_spec_model
from wattcounts_pipeline.core.errors import BackendError, SpecError
from wattcounts_pipeline.serving.loadgen import Send
from wattcounts_pipeline.serving.spec import ServingSpec

PYTHON_SERVER_MIN_CTX = 2048


class MetricsLlamaCppServer(LlamaCppServerBackend):
    """The llama.cpp server backend with llama-server's Prometheus endpoint turned on."""

    def _native_argv(self) -> tuple[list[str], str]:
        argv, health = super()._native_argv()
        return [*argv, "--metrics"], health


def engine_args_for(spec: ServingSpec, max_input_tokens: int, max_output_tokens: int) -> dict[str, Any]:
    """The server arguments, with a context that holds the longest request (per slot for llama-server, which
    sizes it itself); a given context too small for the workload is refused before anything starts."""
    args = spec.engine_kwargs
    need = max_input_tokens + max_output_tokens + 16
    if spec.framework == "vllm":  # its OpenAI server, as many sequences at once as the sweep has slots
        if args.get("mode", "server") != "server":
            raise SpecError(f"serving sweep {spec.key}: vllm runs as a server here (engine_args.mode: server)")
        return {"max_model_len": need, "max_num_seqs": spec.slots, **args, "mode": "server"}
    if spec.framework != "llamacpp-server" or args.get("server") == "llama-server":
        return args
    n_ctx = int(args.get("n_ctx", max(PYTHON_SERVER_MIN_CTX, need)))
    if n_ctx < need:
        raise SpecError(f"serving sweep {spec.key}: engine_args.n_ctx {n_ctx} cannot hold the workload's longest "
                        f"request ({max_input_tokens} prompt + {max_output_tokens} output tokens)")
    if spec.slots != 1:
        raise SpecError(f"serving sweep {spec.key}: llama-cpp-python's server runs one request at a time; slots > 1 "
                        "needs engine_args.server: llama-server")
    return {**args, "n_ctx": n_ctx}


class ServingTarget:
    """One server for one sweep: `start()`, then `completions()`, `send()`, `alive()`, `fail()`, `close()`."""

    def __init__(self, spec: ServingSpec, max_input_tokens: int, max_output_tokens: int) -> None:
        self.spec = spec
        args = engine_args_for(spec, max_input_tokens, max_output_tokens)
        batch_spec = spec.backend_spec(max_input_tokens, max_output_tokens, args)
        self.backend: LlamaCppServerBackend | VLLMBackend | OpenAICompatBackend
        model_path, _ = resolve_spec_model(batch_spec)  # openai: the tokenizer folder, unless engine_args name one
        if spec.framework == "llamacpp-server":
            self.backend = MetricsLlamaCppServer(batch_spec, model_path)
        elif spec.framework == "vllm":
            self.backend = VLLMBackend(batch_spec, model_path)
        else:
            self.backend = OpenAICompatBackend(batch_spec, model_path)

    @property
    def _server(self) -> ManagedServer | None:
        """The server process we started (llama.cpp, vLLM), or None for an endpoint someone else runs."""
        return self.backend.server if isinstance(self.backend, LlamaCppServerBackend | VLLMBackend) else None

    def start(self) -> ServingTarget:
        self.backend.load()
        return self

    @property
    def client(self) -> CompletionClient:
        client = self.backend.client
        if client is None:
            raise BackendError(f"{self.spec.key}: server used before start()")
        return client

    def tokenize(self, text: str) -> list[int]:
        return self.backend.tokenize(text)

    @property
    def bos_token_ids(self) -> list[int]:
        return self.backend.bos_token_ids

    def completions(self, prompts: list[Prompt]) -> list[Completion]:
        """Requests as this server takes them (token ids, or text for llama-cpp-python's server)."""
        if isinstance(self.backend, LlamaCppServerBackend):
            return [self.backend._completion(p) for p in prompts]
        return self.backend.completions(prompts)

    def send(self, completions: list[Completion]) -> Send:
        """Request i is completions[i mod len]: a load point cycles through the workload's list."""
        client = self.client

        def send(index: int, t0: float) -> RequestResult:
            return client.complete(completions[index % len(completions)], t0)

        return send

    def alive(self, grace_s: float = 0.0) -> bool:
        """False when a server process we started has exited (an external endpoint is assumed alive). `grace_s`
        waits that long for an exit under way: a killed server's sockets close before its exit can be seen."""
        if isinstance(self.backend, OpenAICompatBackend):
            return True
        server = self._server
        if server is None or server.proc is None:
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=grace_s)
        return server.proc.poll() is None

    def fail(self, reason: str) -> BackendError:
        """The error to record for a failed point: with the server's log tail when we started it (and it stopped)."""
        if self._server is not None:
            return self._server.fail(reason)
        return BackendError(f"{reason} (endpoint {self.client.base_url}; its log is on its host)")

    @property
    def metrics_url(self) -> str:
        base = self.client.base_url
        return urllib.parse.urljoin(base + "/", "metrics")

    @property
    def server_name(self) -> str:
        if isinstance(self.backend, LlamaCppServerBackend):
            return self.backend.server_kind
        if isinstance(self.backend, VLLMBackend):
            return "vllm"
        return urllib.parse.urlsplit(self.client.base_url).netloc

    def info(self) -> dict[str, Any]:
        return self.backend.info()

    def close(self) -> None:
        self.backend.close()
