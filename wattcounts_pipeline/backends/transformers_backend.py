"""Hugging Face transformers: real checkpoints, GGUF (dequantized) or random weights from a config.

Modes (engine arg `compile`): false, eager `generate`; true, `generate` with a static KV cache, whose
forward transformers compiles itself; "graphs", a static KV cache and the one-token step compiled by
torch.compile into CUDA graphs; "capture", the same loop with the eager step recorded into a CUDA graph
(no compiler: aten's kernels, seconds to prepare instead of minutes). Both graph modes decode through
backends/static_decode.py without waiting on the host between steps, on one GPU. Compiling and recording
happen during warm-up, outside every window.
Quantization `FP8` swaps the linears for the project's FP8 ones (backends/fp8.py); `torchao-*` and `bnb-*`
are torchao's and bitsandbytes' formats, applied as their users apply them (backends/quantizers.py). `parallelism: pipeline` with
`gpus: N` splits the decoder layers evenly over N GPUs (accelerate's dispatch hooks move activations),
which is how a 70B model in bf16 fits on 4 × 80 GB.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from wattcounts_pipeline.backends.base import DTYPE_ALIASES, HFTokenizerMixin, InferenceBackend, Prompt, RequestResult
from wattcounts_pipeline.backends.gguf_convert import checkpoint_from_gguf
from wattcounts_pipeline.backends.quantizers import apply_torchao, bnb_config, bnb_info, library, random_checkpoint
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

logger = logging.getLogger(__name__)
COMPILE_MODES = (False, True, "graphs", "capture")
GRAPH_MODES = {"graphs": "compile", "capture": "capture"}  # engine arg -> StaticDecoder mode

class TransformersBackend(HFTokenizerMixin, InferenceBackend):
    framework = "transformers"

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        super().__init__(spec, model_path)
        args = spec.engine_kwargs
        self.compile = args.get("compile", False)
        if self.compile not in COMPILE_MODES:
            raise BackendError(f"transformers: engine arg compile={self.compile!r}; use one of {COMPILE_MODES}")
        if self.compile in GRAPH_MODES and spec.parallelism != "none":  # graphs of NCCL or cross-device steps: not built
            raise BackendError(f"transformers: compile {self.compile!r} runs on one GPU only "
                               f"(parallelism {spec.parallelism!r}); use compile true or false")
        self.device_name = str(args.get("device", "auto"))
        self.quantizer = library(spec.quantization)
        if self.quantizer and spec.parallelism != "none":
            raise BackendError(f"transformers: quantization {spec.quantization!r} runs on one device only "
                               f"(parallelism {spec.parallelism!r})")
        self.quant_info: dict[str, Any] = {}
        self.model: Any = None
        self.tokenizer: Any = None
        self.decoder: Any = None
        self.fp8_linears = 0

    def _pipeline_devices(self, device: str) -> list[str]:
        """The spec's N devices: the first N visible GPUs, or N × "cpu" (a test of the split on a CPU host)."""
        import torch

        n = self.spec.gpus
        if device == "cpu":
            return ["cpu"] * n
        if torch.cuda.device_count() < n:
            raise BackendError(f"transformers: parallelism pipeline over {n} GPUs, but "
                               f"{torch.cuda.device_count()} visible")
        return [f"cuda:{i}" for i in range(n)]

    def _dtype(self) -> Any:
        """The torch dtype the spec asks for ("auto" is float32), or a BackendError listing the known ones."""
        import torch

        name = DTYPE_ALIASES.get(self.spec.dtype, "float32" if self.spec.dtype == "auto" else self.spec.dtype)
        dtype = getattr(torch, name, None)
        if dtype is None:
            raise BackendError(f"transformers: unknown dtype {self.spec.dtype!r}; use one of {sorted(DTYPE_ALIASES)}")
        return dtype

    def load(self) -> None:
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        device = self.device_name if self.device_name != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = self._dtype()
        path = Path(self.model_path)
        try:
            if self.spec.parallelism == "pipeline":
                devices = self._pipeline_devices(device)
                self.model = build_pipeline(path, dtype, devices, random=self.spec.model.weights == "random")
                device = devices[0]
                self.tokenizer = self._load_tokenizer(path)
            elif self.quantizer == "bitsandbytes":
                self.model = self._load_bnb(path, dtype, device)
                self.tokenizer = self._load_tokenizer(path)
            elif self.spec.model.weights == "random":
                config = AutoConfig.from_pretrained(path)
                torch.manual_seed(0)
                with torch.device(device):
                    self.model = AutoModelForCausalLM.from_config(config, dtype=dtype)
                self.tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_path(path))
            elif path.suffix == ".gguf":
                # transformers dequantizes a GGUF on every load (48 s for Gemma 3 270M on 2 cores): do it once,
                # into the cached safetensors checkpoint the quality step and vLLM load too (same values)
                folder = checkpoint_from_gguf(path)
                self.tokenizer = AutoTokenizer.from_pretrained(folder)
                self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)  # type: ignore[arg-type]  # transformers types .to as unbound
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)  # type: ignore[arg-type]  # as above
        except (OSError, ValueError) as exc:
            raise BackendError(f"transformers could not load {path}: {exc}") from exc
        self.model.eval()
        if self.spec.quantization.upper() == "FP8":
            from wattcounts_pipeline.backends.fp8 import quantize_model_fp8

            self.fp8_linears = quantize_model_fp8(self.model)
            logger.info("FP8: %d linears quantized", self.fp8_linears)
        elif self.quantizer == "torchao":
            self.quant_info = apply_torchao(self.model, self.spec.quantization)
            logger.info("torchao %s: %d linears", self.spec.quantization, self.quant_info["quantized_linears"])
        self.device = device
        if self.compile in GRAPH_MODES:
            from wattcounts_pipeline.backends.static_decode import StaticDecoder

            if self.compile == "capture" and not str(device).startswith("cuda"):
                raise BackendError(f"transformers: compile 'capture' records CUDA graphs; device is {device!r}")
            self.decoder = StaticDecoder(self.model, mode=GRAPH_MODES[self.compile])
        self._versions = {"framework_version": transformers.__version__, "torch_version": torch.__version__}
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    def _load_bnb(self, path: Path, dtype: Any, device: str) -> Any:
        """Load with a BitsAndBytesConfig, as Hugging Face users do; random weights are saved as a checkpoint
        once first (bitsandbytes quantizes while loading)."""
        from transformers import AutoModelForCausalLM

        from wattcounts_pipeline import paths

        if self.spec.model.weights == "random":
            path = random_checkpoint(path, dtype, paths.subdir("cache", "random-checkpoints"), device)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, device_map=device,
            quantization_config=bnb_config(self.spec.quantization, dtype))
        self.quant_info = bnb_info(model, self.spec.quantization)
        return model

    def _load_tokenizer(self, path: Path) -> Any:
        """The tokenizer of a checkpoint folder, or for random weights the spec's tokenizer folder."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._tokenizer_path(path) if self.spec.model.weights == "random" else path)

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
            for i in range(self.spec.gpus):  # a pipeline's last stage may still be running
                torch.cuda.synchronize(i)

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
            start = time.perf_counter()
            if self.decoder is not None:
                first: list[float] = []

                def stamp(times: list[float] = first) -> None:
                    self.sync()
                    times.append(time.perf_counter())

                out = self.decoder.generate(ids.to(self.device), mask.to(self.device), new_tokens, stamp)
                n_out = int(out.shape[1])
            else:
                clock = StepClock(self.sync)
                with torch.inference_mode():
                    out = self.model.generate(
                        input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=False,
                        max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad,
                        stopping_criteria=StoppingCriteriaList([clock]),
                        **({"cache_implementation": "static"} if self.compile else {}))
                n_out = int(out.shape[1] - width)
                first = clock.times
            self.sync()
            end = time.perf_counter()
            first_s = first[0] if first else end
            for p in chunk:
                results.append(RequestResult(input_tokens=len(p.token_ids), output_tokens=n_out,
                                             start_s=start - t0, ttft_s=first_s - start, e2e_s=end - start))
        return results

    def info(self) -> dict[str, Any]:
        args: dict[str, Any] = {"compile": self.compile, "dtype": self.spec.dtype, "device": self.device}
        if self.spec.parallelism != "none":
            args.update(parallelism=self.spec.parallelism, gpus=self.spec.gpus,
                        device_map=_summarize_device_map(getattr(self.model, "hf_device_map", {})))
        args.update(self.quant_info)
        if self.fp8_linears:
            args.update(fp8_linears=self.fp8_linears, fp8_scheme="e4m3 per-channel weights, per-token activations")
        return {**self._versions, "device": self.device, "engine_args": args}

    def close(self) -> None:
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def balanced_device_map(model: Any, devices: list[str]) -> dict[str, str]:
    """Decoder layers split into len(devices) contiguous, equal stages; embeddings first, head last."""
    base_name = model.base_model_prefix
    base = getattr(model, base_name)
    layers = base.layers
    n, last = len(layers), devices[-1]
    device_map = {f"{base_name}.layers.{i}": devices[i * len(devices) // n] for i in range(n)}
    for child, _ in base.named_children():
        if child != "layers":
            device_map[f"{base_name}.{child}"] = devices[0] if child == "embed_tokens" else last
    for child, _ in model.named_children():
        if child != base_name:
            device_map[child] = last
    return device_map


def build_pipeline(path: Path, dtype: Any, devices: list[str], random: bool) -> Any:
    """The model split over `devices` by layer. Random weights are drawn on each layer's own device, so
    a 70B model never passes through host memory; buffers (rotary tables, scales) are built for real."""
    import torch
    from accelerate import dispatch_model, init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    device_map = balanced_device_map(model, devices)
    if not random:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map)
    torch.manual_seed(0)
    for name, param in list(model.named_parameters()):
        device = next(d for prefix, d in device_map.items() if name == prefix or name.startswith(prefix + "."))
        value = torch.empty(param.shape, dtype=dtype, device=device)
        if param.dim() > 1:
            value.normal_(0.0, 0.02)
        else:
            value.fill_(1.0 if name.endswith("weight") else 0.0)
        set_module_tensor_to_device(model, name, device, value=value)
    for prefix, device in device_map.items():  # parameters are in place: this moves the buffers
        model.get_submodule(prefix).to(device)
    if set(devices) == {"cpu"}:
        model.hf_device_map = device_map
        return model
    return dispatch_model(model, device_map=device_map)


def _summarize_device_map(device_map: dict[str, Any]) -> dict[str, int]:
    """How many modules each device holds (the full map has a line per layer)."""
    counts: dict[str, int] = {}
    for device in device_map.values():
        counts[str(device)] = counts.get(str(device), 0) + 1
    return counts
