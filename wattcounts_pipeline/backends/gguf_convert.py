"""GGUF → Hugging Face safetensors checkpoint, for frameworks that load only the latter (vLLM).

transformers dequantizes the GGUF on load; the result is saved once into the cache, keyed by the
GGUF's name and size, and reused. The weights are the GGUF's, dequantized: same values, float32.
"""

from __future__ import annotations

import logging
from pathlib import Path

from wattcounts_pipeline import paths
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
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (OSError, ValueError) as exc:
        raise BackendError(f"transformers could not read {gguf}: {exc}") from exc
    model.hf_quantizer = None  # the tensors are already dequantized; the marker only blocks saving
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / DONE).write_text(str(gguf), encoding="utf-8")
    return out
