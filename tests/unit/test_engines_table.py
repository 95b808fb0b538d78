"""The byte counts behind the README engines table's roofline shares for the transformers formats."""

from __future__ import annotations

import pytest

from benchmarks import engines_table
from tests.helpers import REPO
from wattcounts_pipeline.backends.gguf_random import Shape, decode_step_bytes

ROOT = REPO
CONFIGS = ROOT / "models" / "configs"


@pytest.mark.parametrize("model", ["llama-3.1-8b", "qwen2.5-0.5b", "phi-3-mini"])
def test_a_two_byte_linear_format_reads_what_the_f16_plan_reads(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same tensors, same gathered (or, tied, whole) embedding: only the norms differ (bf16 here, F32 in GGUF)."""
    monkeypatch.setitem(engines_table.LINEAR_BYTES, "two-bytes", lambda k: 2.0)
    shape = Shape.from_config(CONFIGS / model)
    ours, gguf = engines_table.linear_format_step_bytes(shape, "two-bytes"), decode_step_bytes(shape, "F16")
    assert ours < gguf and (gguf - ours) / gguf < 1e-3


def test_formats_order_by_bytes_and_the_head_stays_bf16() -> None:
    shape = Shape.from_config(CONFIGS / "llama-3.1-8b")
    step = {q: engines_table.linear_format_step_bytes(shape, q) for q in engines_table.LINEAR_BYTES}
    assert step["torchao-int4-wo"] < step["bnb-nf4"] < step["torchao-int8-wo"] < step["FP8"] < 15.0e9
    head_bytes = 2 * shape.n_vocab * shape.n_embd  # lm_head unquantized: 1.05 GB of the 8.04 GB FP8 step
    assert 8.0e9 < step["FP8"] < 8.1e9 and step["FP8"] - head_bytes == pytest.approx(6.98e9, rel=0.01)
    assert engines_table.roofline_share("llama-3.1-8b", "bnb-nf4", 29.25, 4800) == "3%"
