"""Smoke check of a llama.cpp build on a GPU host, in-process through llama-cpp-python's bindings.

    python -X faulthandler scripts/llamacpp_gpu_check.py CONFIG_DIR QUANTIZATION [N_TOKENS] [KEY=VALUE ...]

Writes (or reuses) the random GGUF the sweep would run, loads it with every layer on the GPU, decodes
N_TOKENS greedily and prints tokens/s: a crash shows here, with a Python traceback, not in the sweep.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from wattcounts_pipeline import paths
from wattcounts_pipeline.backends.gguf_random import random_gguf
from wattcounts_pipeline.backends.llamacpp_lib import load_llama_cpp


def main() -> None:
    config, quantization = Path(sys.argv[1]), sys.argv[2]
    n_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    extra = {k: int(v) if v.lstrip("-").isdigit() else v == "true" if v in ("true", "false") else v
             for k, v in (a.split("=", 1) for a in sys.argv[4:])}  # Llama() arguments to vary
    gguf_path = random_gguf(config, quantization, paths.subdir("cache", "models"))
    print("gguf", gguf_path, flush=True)
    llama_cpp = load_llama_cpp()
    print("llama_cpp", llama_cpp.__version__, "gpu offload:", llama_cpp.llama_supports_gpu_offload(), flush=True)
    kwargs = {"n_gpu_layers": 99, "n_ctx": 512, **extra}
    print("Llama", kwargs, flush=True)
    llm = llama_cpp.Llama(model_path=str(gguf_path), verbose=True, **kwargs)
    print("loaded", flush=True)
    tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog.", add_bos=True)
    t0 = time.perf_counter()
    for i, _ in enumerate(llm.generate(tokens, top_k=1, temp=0.0, reset=True)):
        if i + 1 >= n_tokens:
            break
    print(f"decoded {n_tokens} tokens: {n_tokens / (time.perf_counter() - t0):.1f} tok/s", flush=True)
    llm.close()


if __name__ == "__main__":
    main()
