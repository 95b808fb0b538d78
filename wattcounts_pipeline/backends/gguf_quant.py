"""GGUF quantization types made from a shipped GGUF with llama.cpp's own quantize API.

The ladder (Q8_0 … Q2_K, F16) is re-quantized from whatever the source file holds (Gemma 3 270M ships
as Q4_K_M), which rows must say: a re-quantized Q8_0 cannot be better than its Q4_K_M parent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from wattcounts_pipeline.backends.llamacpp_lib import load_llama_cpp
from wattcounts_pipeline.core.atomic import atomic_file
from wattcounts_pipeline.core.errors import BackendError

logger = logging.getLogger(__name__)


def gguf_file_type(path: Path) -> str:
    """The quantization of a GGUF file as llama.cpp names it (e.g. "Q4_K_M"), from its metadata."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get("general.file_type")
    if field is None:
        raise BackendError(f"{path}: no general.file_type in the GGUF metadata")
    value = int(field.parts[field.data[0]][0])
    return gguf.LlamaFileType(value).name.removeprefix("MOSTLY_")


def requantize(source: Path, quantization: str, cache_dir: Path) -> Path:
    """`source` re-quantized to `quantization`, cached in `cache_dir` and written atomically."""
    llama_cpp = load_llama_cpp()

    native = gguf_file_type(source)
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quantization.upper()}", None)
    if ftype is None:
        raise BackendError(f"llama.cpp cannot quantize to {quantization!r} (no LLAMA_FTYPE_MOSTLY_{quantization.upper()})")
    target = cache_dir / f"{source.stem}.requant-{quantization.upper()}.gguf"
    if target.is_file():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    logger.info("re-quantizing %s (%s) to %s", source, native, quantization)
    with atomic_file(target) as tmp:
        if llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params) != 0:
            raise BackendError(f"llama.cpp failed to quantize {source} to {quantization}")
    return target
