"""Hugging Face transformers: real checkpoints, GGUF (dequantized) or random weights from a config.

Modes: eager `generate`, or `compile: true` for the static KV cache path where transformers compiles
the forward itself (the path seen to work on the lent H200; compilation is done during warm-up).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from wattcounts_pipeline.backends.base import DTYPE_ALIASES, HFTokenizerMixin, InferenceBackend, Prompt, RequestResult
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

logger = logging.getLogger(__name__)

class TransformersBackend(HFTokenizerMixin, InferenceBackend):
    framework = "transformers"

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        super().__init__(spec, model_path)
        args = spec.engine_kwargs
        self.compile = bool(args.get("compile", False))
        self.device_name = str(args.get("device", "auto"))
        self.model: Any = None
        self.tokenizer: Any = None

    def load(self) -> None:
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        device = self.device_name if self.device_name != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype_name = DTYPE_ALIASES.get(self.spec.dtype, "float32" if self.spec.dtype == "auto" else self.spec.dtype)
        dtype = getattr(torch, dtype_name, None)
        if dtype is None:
            raise BackendError(f"transformers: unknown dtype {self.spec.dtype!r}; use one of {sorted(DTYPE_ALIASES)}")
        path = Path(self.model_path)
        try:
            if self.spec.model.weights == "random":
                config = AutoConfig.from_pretrained(path)
                torch.manual_seed(0)
                with torch.device(device):
                    self.model = AutoModelForCausalLM.from_config(config, dtype=dtype)
                self.tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_path(path))
            elif path.suffix == ".gguf":
                if not path.is_file():
                    raise BackendError(f"transformers: GGUF file not found: {path}")
                self.tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                self.model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
                self.model.to(device)
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        except (OSError, ValueError) as exc:
            raise BackendError(f"transformers could not load {path}: {exc}") from exc
        self.model.eval()
        self.device = device
        self._versions = {"framework_version": transformers.__version__, "torch_version": torch.__version__}
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    def _tokenizer_path(self, path: Path) -> Path:
        """The spec's tokenizer folder (relative to the checkout if needed), else the model folder."""
        if not self.spec.model.tokenizer:
            return path
        from wattcounts_pipeline import paths

        tok = Path(self.spec.model.tokenizer)
        return tok if tok.is_absolute() or tok.exists() else paths.REPO_ROOT / tok

    def sync(self) -> None:
        import torch

        if torch.cuda.is_available() and str(self.device).startswith("cuda"):
            torch.cuda.synchronize()

    def generate(self, prompts: list[Prompt], batch_size: int) -> list[RequestResult]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class StepClock(StoppingCriteria):
            """Timestamps each decoding step (after a device sync) without stopping anything."""

            def __init__(self, sync: Any) -> None:
                self.times: list[float] = []
                self.sync = sync

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                if not self.times:
                    self.sync()
                    self.times.append(time.perf_counter())
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        results: list[RequestResult] = []
        t0 = time.perf_counter()
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i: i + batch_size]
            width = max(len(p.token_ids) for p in chunk)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([[pad] * (width - len(p.token_ids)) + list(p.token_ids) for p in chunk])
            mask = torch.tensor([[0] * (width - len(p.token_ids)) + [1] * len(p.token_ids) for p in chunk])
            new_tokens = max(p.max_new_tokens for p in chunk)
            clock = StepClock(self.sync)
            kwargs: dict[str, Any] = {"cache_implementation": "static"} if self.compile else {}
            start = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=False,
                    max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad,
                    stopping_criteria=StoppingCriteriaList([clock]), **kwargs)
            self.sync()
            end = time.perf_counter()
            n_out = int(out.shape[1] - width)
            first = clock.times[0] if clock.times else end
            for p in chunk:
                results.append(RequestResult(input_tokens=len(p.token_ids), output_tokens=n_out,
                                             start_s=start - t0, ttft_s=first - start, e2e_s=end - start))
        return results

    def info(self) -> dict[str, Any]:
        return {**self._versions, "device": self.device, "engine_args": {
            "compile": self.compile, "dtype": self.spec.dtype, "device": self.device}}

    def close(self) -> None:
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
