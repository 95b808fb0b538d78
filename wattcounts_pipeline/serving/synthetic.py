"""Prompts of exact token lengths from synthetic text: the same request list on every machine, no licensed text.

The text is seeded draws from a small list of common English words; it is tokenized once with the model's own
tokenizer and every prompt is a window of that token stream at its own seeded offset, so consecutive prompts share
no prefix (a server's prefix cache would otherwise skip most of the prefill).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from wattcounts_pipeline.backends.base import Prompt
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.serving.mixes import LengthPair

_WORD_TEXT = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if more no out so said what up its about "
         "into than them can only other time new some could these two may first then do any like my now over such "
         "our man me even most made after also did many before must through back years where much your way well "
         "down should because each just those people how too little state good very make world still own see men "
         "work long get here between both life being under never day same another know while last might us great "
         "old year off come since against go came right used take three energy power server request token model "
         "answer question window load rate measure")
WORDS = tuple(_WORD_TEXT.split())


def synthetic_stream(tokenize: Callable[[str], list[int]], min_tokens: int, seed: int) -> list[int]:
    """At least `min_tokens` token ids of seeded synthetic text."""
    rng = random.Random(seed)
    stream: list[int] = []
    while len(stream) < min_tokens:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18)))
        stream.extend(tokenize(sentence.capitalize() + ". "))
    return stream


def synthetic_prompts(pairs: Sequence[LengthPair], tokenize: Callable[[str], list[int]], bos: list[int],
                      seed: int) -> list[Prompt]:
    """One prompt per pair: BOS + a window of the synthetic stream, exactly `input_tokens` long in total."""
    longest = max(p.input_tokens for p in pairs)
    if any(p.input_tokens <= len(bos) for p in pairs):
        raise SpecError(f"every prompt needs more than the {len(bos)} BOS token(s)")
    stream = synthetic_stream(tokenize, 2 * longest + 1024, seed)
    rng = random.Random(seed + 1)
    prompts = []
    for pair in pairs:
        need = pair.input_tokens - len(bos)
        offset = rng.randrange(len(stream) - need + 1)
        prompts.append(Prompt(tuple(bos + stream[offset: offset + need]), pair.output_tokens))
    return prompts
