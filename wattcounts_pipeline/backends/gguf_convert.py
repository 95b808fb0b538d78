"""GGUF → Hugging Face safetensors checkpoint: vLLM loads only the latter, and transformers would dequantize the
GGUF again on every load (48 s for Gemma 3 270M on 2 cores, against about 2 s for the checkpoint).

transformers dequantizes the GGUF; the result is saved once into the cache, keyed by the GGUF's name and size,
and reused. The weights are the GGUF's, dequantized: same values, float32. The folder appears complete or not
at all (staged, then renamed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from wattcounts_pipeline import paths
from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.core.errors import BackendError

logger = logging.getLogger(__name__)

DONE = "converted.ok"  # written last: a folder without it is a partial conversion and is redone


def checkpoint_from_gguf(gguf: Path) -> Path:
    """A folder with config, tokenizer and model.safetensors made from `gguf` (cached)."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise BackendError(f"GGUF file not found: {gguf}")
    out = paths.subdir("cache", "hf-from-gguf", f"{gguf.stem}-{gguf.stat().st_size}")
    if (out / DONE).is_file():
        return out
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise BackendError(f"converting {gguf} to safetensors needs torch and transformers ({exc})") from exc
    logger.info("converting %s to a safetensors checkpoint in %s", gguf, out)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (OSError, ValueError) as exc:
        raise BackendError(f"transformers could not read {gguf}: {exc}") from exc
    model.hf_quantizer = None  # the tensors are already dequantized; the marker only blocks saving
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = atomic.staging_folder(out.parent, out.name)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / DONE).write_text(str(gguf), encoding="utf-8")
        atomic.replace_folder(staging, out)
    except BaseException:
        atomic.remove_tree(staging)
        raise
    return out
