"""llama.cpp served by `python -m llama_cpp.server`, measured through the OpenAI client.

The same GGUF and the same prompts as the in-process `llamacpp` backend, plus what serving costs
(HTTP, JSON, server-sent events). Prompts are tokenized in-process with a vocab-only model;
llama-cpp-python's server takes text prompts only, so each prompt is sent as text and its token
count is the count the server's own tokenization gives (BOS included).
The server runs one request at a time: a concurrency above 1 queues requests, and their TTFT
includes the wait. The server reuses the KV cache of a prompt prefix shared with the previous
request; prompts of one workload share only the BOS token, so nearly every prompt is prefilled.

`engine_args.server: llama-server` runs llama.cpp's own C++ server instead (the binary named by
`$WATTCOUNTS_LLAMA_SERVER`, e.g. a CUDA build from `scripts/build_llamacpp_cuda.sh`), with its defaults
(flash attention where it chooses, continuous batching) and one parallel slot per concurrent request
(`-np` = batch size, `-c` = slots × the longest request, so every slot holds its request). Prompts go as
token ids and with `cache_prompt: false`: a repeated window must prefill again, not reuse its slot's cache.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from wattcounts_pipeline import paths
from wattcounts_pipeline.backends.base import InferenceBackend, Prompt, RequestResult
from wattcounts_pipeline.backends.llamacpp_lib import load_llama_cpp
from wattcounts_pipeline.backends.openai_compat import Completion, CompletionClient
from wattcounts_pipeline.backends.server import ManagedServer
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

logger = logging.getLogger(__name__)

DEFAULT_ENGINE_ARGS: dict[str, Any] = {"n_ctx": 2048, "n_batch": 512, "n_gpu_layers": 0,
                                       "interrupt_requests": False}  # else a new request cuts the streaming one
CLIENT_ARGS = ("timeout_s", "startup_timeout_s", "server")
SERVERS = ("llama_cpp.server", "llama-server")
NATIVE_FLAGS = {"n_gpu_layers": "-ngl", "n_ctx": "-c", "n_batch": "-b", "n_threads": "-t", "flash_attn": "-fa"}


def build_info() -> dict[str, Any]:
    """What `scripts/build_llamacpp_cuda.sh` recorded of the llama.cpp build in use ($WATTCOUNTS_LLAMA_BUILD_INFO)."""
    path = os.environ.get("WATTCOUNTS_LLAMA_BUILD_INFO")
    if not path:
        return {}
    try:
        return dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise BackendError(f"WATTCOUNTS_LLAMA_BUILD_INFO={path}: unreadable build info ({exc})") from exc


def framework_version(bindings_version: str, build: dict[str, Any]) -> str:
    """llama-cpp-python's version, plus the llama.cpp build number where the build knows it (a build from
    the vendored source has no git metadata and says "0")."""
    number = str(build.get("build_number", "0"))
    return f"{bindings_version} (llama.cpp b{number})" if number != "0" else bindings_version


class LlamaCppServerBackend(InferenceBackend):
    """Starts the server in load(), stops it in close(); a failed request stops it and raises with its log."""

    framework = "llamacpp-server"

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        super().__init__(spec, model_path)
        args = spec.engine_kwargs
        self.timeout_s = float(args.get("timeout_s", 300.0))
        self.startup_timeout_s = float(args.get("startup_timeout_s", 120.0))
        self.server_kind = str(args.get("server", "llama_cpp.server"))
        if self.server_kind not in SERVERS:
            raise BackendError(f"llama.cpp server: engine_args.server must be one of {SERVERS}, got {self.server_kind!r}")
        given = {k: v for k, v in args.items() if k not in CLIENT_ARGS}
        if self.native:
            unknown = sorted(set(given) - set(NATIVE_FLAGS))
            if unknown:
                raise BackendError(f"llama-server: unknown engine_args {unknown}; known: {sorted(NATIVE_FLAGS)}")
            w = spec.workload
            slots = w.batch_size
            self.engine_args = {"n_ctx": slots * (w.input_tokens + w.output_tokens + 16), **given, "parallel": slots}
        else:
            self.engine_args = {**DEFAULT_ENGINE_ARGS, "n_threads": os.cpu_count() or 1, **given}
        self.vocab: Any = None
        self.server: ManagedServer | None = None
        self.client: CompletionClient | None = None

    def load(self) -> None:
        llama_cpp = load_llama_cpp()

        if not Path(self.model_path).is_file():
            raise BackendError(f"llama.cpp server: GGUF file not found: {self.model_path}")
        try:
            self.vocab = llama_cpp.Llama(model_path=str(self.model_path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not read the vocabulary of {self.model_path}: {exc}") from exc
        self._version = llama_cpp.__version__
        log = paths.subdir("logs", "servers") / f"{self.spec.key}.log"
        argv, health = self._native_argv() if self.native else self._python_argv()
        self.server = ManagedServer(argv, log, health_path=health, startup_timeout_s=self.startup_timeout_s)
        self.server.start()
        try:
            self.client = CompletionClient(self.server.base_url, timeout_s=self.timeout_s,
                                           extra_body={"cache_prompt": False} if self.native else None)
        except BackendError as exc:
            raise self.server.fail(str(exc)) from exc

    @property
    def native(self) -> bool:
        return self.server_kind == "llama-server"

    def _python_argv(self) -> tuple[list[str], str]:
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
                "--host", "{host}", "--port", "{port}", "--seed", "0"]
        for key, value in sorted(self.engine_args.items()):
            argv += [f"--{key}", str(value)]
        return argv, "/v1/models"

    def _native_argv(self) -> tuple[list[str], str]:
        binary = os.environ.get("WATTCOUNTS_LLAMA_SERVER", "llama-server")
        argv = [binary, "-m", str(self.model_path), "--host", "{host}", "--port", "{port}", "--seed", "0",
                "-np", str(self.engine_args["parallel"])]
        for key, value in sorted(self.engine_args.items()):
            if key in NATIVE_FLAGS:
                argv += [NATIVE_FLAGS[key], str(value)]
        return argv, "/health"

    def tokenize(self, text: str) -> list[int]:
        return self.vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    @property
    def bos_token_ids(self) -> list[int]:
        bos = self.vocab.token_bos()
        return [bos] if bos >= 0 else []

    def _completion(self, prompt: Prompt) -> Completion:
        if self.native:  # llama-server takes the exact token ids (BOS included)
            return Completion(list(prompt.token_ids), len(prompt.token_ids), prompt.max_new_tokens)
        n_bos = len(self.bos_token_ids)
        text = self.vocab.detokenize(list(prompt.token_ids[n_bos:])).decode("utf-8", errors="replace")
        n_in = len(self.vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True))  # as the server sees it
        return Completion(text, n_in, prompt.max_new_tokens)

    def generate(self, prompts: list[Prompt], batch_size: int) -> list[RequestResult]:
        if self.client is None or self.server is None:
            raise BackendError("llama.cpp server: generate() before load()")
        try:
            return self.client.run([self._completion(p) for p in prompts], batch_size)
        except BackendError as exc:
            raise self.server.fail(str(exc)) from exc

    def info(self) -> dict[str, Any]:
        build = build_info()
        version = framework_version(self._version, build)
        return {"framework_version": version, "device": "cpu" if not self.engine_args.get("n_gpu_layers")
                else "gpu", "engine_args": {**self.engine_args, "server": self.server_kind,
                                            "timeout_s": self.timeout_s, **({"build": build} if build else {})}}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.vocab is not None:
            self.vocab.close()
            self.vocab = None
