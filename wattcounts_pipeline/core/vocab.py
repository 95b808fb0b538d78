"""The words every part shares, written once: frameworks, spec enumerations, table names, defaults, folders.

A new engine, table or default lands here and every part that lists them (spec checks, backend registry,
predictor features, release layout) follows; tests/unit/test_vocab.py checks the places that must agree.
"""

from __future__ import annotations

# Inference frameworks a spec may name; backends/base.py REGISTRY has one class for each.
FRAMEWORKS = ("llamacpp", "llamacpp-server", "transformers", "vllm", "openai")
LLAMACPP_FRAMEWORKS = ("llamacpp", "llamacpp-server")  # run GGUF files
QUALITY_FRAMEWORKS = ("llamacpp", "transformers")  # lm-eval runs through these (quality/runner.py)
WEIGHTS = ("real", "random")
WORKLOAD_KINDS = ("fixed", "sharegpt")
PARALLELISMS = ("none", "pipeline", "tensor")
# Where a quality value comes from (schemas/quality.yaml `source`), most trusted first; the recommendation adds
# `predicted` (its quality model) for setups the release has no value for.
QUALITY_SOURCES = ("measured", "published", "derived")
RECOMMEND_QUALITY_SOURCES = (*QUALITY_SOURCES, "predicted")

# Tables: what a measurement produces, and the release's configs in the order the card lists them.
MEASURED_TABLES = ("runs", "requests", "power_traces")
RELEASE_TABLES = ("configurations", "runs", "requests", "quality", "power_traces")

# Defaults of the derived money and carbon columns, overridable per call.
ELECTRICITY_USD_PER_KWH = 0.15
CARBON_G_PER_KWH = 400.0

PREDICTORS_SUBDIR = "predictors"  # under WATTCOUNTS_HOME: where training writes and `recommend` looks
