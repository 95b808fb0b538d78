"""benchmarks/engines_coverage.py: which GPU configurations a release adds over v0.1.0, per engine."""

from __future__ import annotations

import pandas as pd

from benchmarks import engines_coverage


def _configs(rows: list[tuple[str, str, str, str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"configuration_id": cid, "gpu_name": gpu, "framework": fw, "quantization": quant,
                          "model": model, "architecture": model.split("-")[0], "batch_size": batch,
                          "workload": "decode-128-256"} for cid, gpu, fw, quant, model, batch in rows])


def test_new_configurations_per_engine_and_card() -> None:
    old = _configs([("a", "NVIDIA H200", "transformers", "BF16", "llama-8b", 1)])
    new = _configs([("a", "NVIDIA H200", "transformers", "BF16", "llama-8b", 1),  # in v0.1.0
                    ("a", "NVIDIA H100", "transformers", "BF16", "llama-8b", 1),  # same id, another card: new
                    ("b", "NVIDIA H200", "llamacpp-server", "Q4_K_M", "qwen-7b", 8),
                    ("c", "NVIDIA H200", "transformers", "bnb-nf4", "qwen-7b", 32),
                    ("d", "NVIDIA H200", "transformers", "torchao-fp8-row", "qwen-7b", 1),
                    ("e", "NVIDIA H200", "llamacpp", "Q8_0", "qwen-7b", 1)])
    added = engines_coverage.new_configurations(old, new)
    assert len(added) == 5 and (added["configuration_id"].iloc[0], added["gpu_name"].iloc[0]) == ("a", "NVIDIA H100")
    assert list(added["engine"]) == ["transformers", "llama.cpp server", "transformers + bitsandbytes",
                                     "transformers + torchao", "llama.cpp in-process"]
    table = engines_coverage.coverage(added).set_index("engine")
    assert table.loc["transformers", "cards"] == "NVIDIA H100"
    assert table.loc["llama.cpp server", "batch sizes"] == "8"
    assert (table["formats on >= 4 shapes"] == 0).all() and table["configurations"].sum() == 5
