"""llama.cpp in-process through llama-cpp-python: GGUF weights, greedy fixed-length decoding."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from wattcounts_pipeline.backends.base import InferenceBackend, Prompt, RequestResult
from wattcounts_pipeline.backends.llamacpp_lib import load_llama_cpp
from wattcounts_pipeline.backends.llamacpp_server import build_info, framework_version
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

logger = logging.getLogger(__name__)

DEFAULT_ENGINE_ARGS: dict[str, Any] = {"n_ctx": 2048, "n_batch": 512, "n_gpu_layers": 0}


class LlamaCppBackend(InferenceBackend):
    """One sequence at a time (the in-process API has no batching): batch_size must be 1."""

    framework = "llamacpp"

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        super().__init__(spec, model_path)
        self.engine_args = {**DEFAULT_ENGINE_ARGS, "n_threads": os.cpu_count() or 1, **spec.engine_kwargs}
        self.llm: Any = None

    def load(self) -> None:
        llama_cpp = load_llama_cpp()

        if not Path(self.model_path).is_file():
            raise BackendError(f"llama.cpp: GGUF file not found: {self.model_path}")
        if self.spec.workload.batch_size != 1:
            raise BackendError("llama.cpp in-process runs one sequence at a time: use batch_size 1")
        try:
            self.llm = llama_cpp.Llama(model_path=str(self.model_path), verbose=False, seed=0, **self.engine_args)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        self._version = llama_cpp.__version__

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    @property
    def bos_token_ids(self) -> list[int]:
        bos = self.llm.token_bos()
        return [bos] if bos >= 0 else []

    def generate(self, prompts: list[Prompt], batch_size: int) -> list[RequestResult]:
        results = []
        t0 = time.perf_counter()
        for prompt in prompts:
            self.llm.reset()  # no KV reuse between requests: every prompt is prefilled in full
            start = time.perf_counter()
            first = None
            n_out = 0
            for _ in self.llm.generate(list(prompt.token_ids), top_k=1, top_p=1.0, temp=0.0, reset=True):
                n_out += 1
                if first is None:
                    first = time.perf_counter()
                if n_out >= prompt.max_new_tokens:
                    break
            end = time.perf_counter()
            results.append(RequestResult(input_tokens=len(prompt.token_ids), output_tokens=n_out,
                                         start_s=start - t0, ttft_s=(first or end) - start, e2e_s=end - start))
        return results

    def info(self) -> dict[str, Any]:
        build = build_info()
        version = framework_version(self._version, build)
        return {"framework_version": version, "device": "cpu" if not self.engine_args["n_gpu_layers"]
                else "gpu", "engine_args": {**self.engine_args, **({"build": build} if build else {})}}

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
