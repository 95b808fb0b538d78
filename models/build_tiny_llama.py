"""Rebuild models/tiny-llama: a 2-layer Llama config and a 512-token byte-level BPE tokenizer, offline.

Run once (`python models/build_tiny_llama.py`); the outputs are committed so the default experiment
never needs the Hub. Random weights are made at run time from config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, PreTrainedTokenizerFast

HERE = Path(__file__).parent
OUT = HERE / "tiny-llama"
CORPUS = HERE.parent / "wattcounts_pipeline" / "workloads" / "data" / "gsm8k_questions.jsonl"


def main() -> None:
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(OUT)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    config.save_pretrained(OUT)


if __name__ == "__main__":
    main()
