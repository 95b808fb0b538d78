"""Build prompts of exact token lengths, from shipped text or ShareGPT-style conversations.

Identical workloads across frameworks are what make them comparable: prompts are cut in token space
with the model's own tokenizer, and every request generates exactly `output_tokens` (EOS ignored).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from wattcounts_pipeline.backends.base import Prompt
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.specs import Workload

DEFAULT_CORPUS = Path(__file__).parent / "data" / "gsm8k_questions.jsonl"


def read_corpus(path: Path) -> list[str]:
    """Texts of a JSONL file with a "text" field, naming file and line on bad input."""
    texts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            texts.append(str(json.loads(line)["text"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SpecError(f"{path}: line {lineno}: expected a JSON object with a 'text' field ({exc})") from exc
    if not texts:
        raise SpecError(f"{path}: no prompt text")
    return texts


def read_sharegpt(path: Path) -> list[str]:
    """First human turn of each conversation; a truncated JSON array is salvaged object by object."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: ShareGPT file not found") from None
    decoder = json.JSONDecoder()
    texts: list[str] = []
    pos = raw.find("[") + 1
    while pos > 0:
        start = raw.find("{", pos)
        if start < 0:
            break
        try:
            obj, pos = decoder.raw_decode(raw, start)
        except json.JSONDecodeError:
            break  # the truncated tail
        turns = [t.get("value", "") for t in obj.get("conversations", []) if t.get("from") == "human"]
        if turns and turns[0].strip():
            texts.append(turns[0])
    if not texts:
        raise SpecError(f"{path}: no human turns found")
    return texts


def build_prompts(workload: Workload, tokenize: Callable[[str], list[int]], bos: list[int]) -> list[Prompt]:
    """`num_requests` prompts for `workload`, deterministic for its seed."""
    rng = random.Random(workload.seed)
    if workload.kind == "sharegpt":
        if not workload.prompts_path:
            raise SpecError(f"workload {workload.name!r}: a sharegpt workload needs prompts_path")
        texts = read_sharegpt(Path(workload.prompts_path))
        chosen = [texts[rng.randrange(len(texts))] for _ in range(workload.num_requests)]
        return [Prompt(tuple(bos + tokenize(t)[: workload.input_tokens - len(bos)]), workload.output_tokens)
                for t in chosen]
    corpus = read_corpus(Path(workload.prompts_path) if workload.prompts_path else DEFAULT_CORPUS)
    stream: list[int] = []
    for text in corpus:  # enough token material for every request
        stream.extend(tokenize(text + "\n"))
        if len(stream) >= workload.input_tokens * 4:
            break
    need = workload.input_tokens - len(bos)
    if need < 1:
        raise SpecError(f"workload {workload.name!r}: input_tokens must exceed the {len(bos)} BOS token(s)")
    while len(stream) < need + workload.num_requests:
        stream = stream + stream
    prompts = []
    for _ in range(workload.num_requests):
        offset = rng.randrange(len(stream) - need + 1)
        prompts.append(Prompt(tuple(bos + stream[offset: offset + need]), workload.output_tokens))
    return prompts
