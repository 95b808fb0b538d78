"""The vLLM offline engine in its own process, driven by JSON lines (run by path, not imported).

vLLM keeps heavy state, spawns its own processes and may need its own virtual environment (its
pins on transformers and fastapi differ from the pipeline's), so `VLLMBackend` runs this file with
the chosen interpreter. Standard library and vllm only; everything vLLM prints goes to stderr, the
protocol uses the original stdout: one JSON object per line each way.

  → {"engine": {...LLM kwargs...}}          ← {"ready": true, "version": "...", "device": "..."}
  → {"prompts": [[ids]...], "max_tokens": [n...], "batch_size": b}
                                            ← {"results": [{input_tokens, output_tokens, start_s, ttft_s, e2e_s}]}
  → {"stop": true}                          (or end of stdin)
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def run_batches(llm: Any, prompts: list[list[int]], max_tokens: list[int], batch_size: int) -> list[dict[str, Any]]:
    """Step the engine batch by batch, timestamping each request's first token and its end."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    engine = llm.llm_engine
    results: list[dict[str, Any]] = [{} for _ in prompts]
    t0 = time.perf_counter()
    for lo in range(0, len(prompts), batch_size):
        ids: dict[str, int] = {}
        start = time.perf_counter()
        for i in range(lo, min(lo + batch_size, len(prompts))):
            n = max_tokens[i]
            params = SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0)
            rid = f"wc-{lo}-{i}"
            internal = engine.add_request(rid, TokensPrompt(prompt_token_ids=prompts[i]), params)
            ids[rid] = ids[internal] = i  # outputs carry the caller's id; some versions return another
            results[i] = {"input_tokens": len(prompts[i]), "start_s": start - t0, "first": None}
        while engine.has_unfinished_requests():
            outputs = engine.step()
            now = time.perf_counter()
            for out in outputs:
                res = results[ids[out.request_id]]
                if res["first"] is None and out.outputs and out.outputs[0].token_ids:
                    res["first"] = now
                if out.finished:
                    res["output_tokens"] = len(out.outputs[0].token_ids)
                    res["ttft_s"] = (res.pop("first") or now) - start
                    res["e2e_s"] = now - start
    return results


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # vLLM's prints and logs go to the log, never into the protocol
    config = json.loads(sys.stdin.readline())
    import torch
    import vllm

    llm = vllm.LLM(**config["engine"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    proto.write(json.dumps({"ready": True, "version": vllm.__version__, "device": device}) + "\n")
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("stop"):
            break
        results = run_batches(llm, msg["prompts"], msg["max_tokens"], int(msg["batch_size"]))
        proto.write(json.dumps({"results": results}) + "\n")


if __name__ == "__main__":  # vLLM spawns processes that re-import the main module
    main()
