"""Stage 3: lm-eval quality of the partition's model + quantization + framework (real weights only)."""

import hashlib
import json

import dagster as dg
import pandas as pd

from wattcounts_pipeline.backends.weights import resolve_spec_model
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.specs import ExperimentSpec
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.defs.fleet import partition_backfill_policy
from wattcounts_pipeline.defs.io import ByPartition, is_stored, read_stored, store_folder, write_stored
from wattcounts_pipeline.defs.resources import ExperimentsResource, experiment_partitions
from wattcounts_pipeline.defs.validate import validated_measurements

QUALITY_CACHE = "quality_cache"  # <store>/quality_cache/<quality_key>/: scores shared by partitions and hosts


def quality_key(spec: ExperimentSpec) -> str:
    """Quality depends on weights, quantization, framework and tasks, not on the workload: share it."""
    identity = {"model": spec.model.source, "revision": spec.model.revision, "quantization": spec.quantization,
                "framework": spec.framework, "dtype": spec.dtype, "quality": spec.to_dict()["quality"]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dg.asset(
    partitions_def=experiment_partitions,
    group_name="quality",
    kinds={"python"},
    deps=[validated_measurements],
    pool="measurement",  # quality runs the same model on the same device
    backfill_policy=partition_backfill_policy(),  # defs/fleet.py: one run for all partitions on one machine
)
def quality_scores(context: dg.AssetExecutionContext, experiments: ExperimentsResource) -> ByPartition:
    """Runs lm-eval (local task files shipped in the package) on the same model, quantization and
    framework that was measured. Random-weight configurations get no quality rows. Scores are shared
    between partitions that differ only in workload."""
    return ByPartition({key: _partition_quality(context, key, experiments.spec(key))
                        for key in context.partition_keys})


def _partition_quality(context: dg.AssetExecutionContext, key: str, spec: ExperimentSpec) -> pd.DataFrame:
    contract = load_contract("quality")
    if spec.model.weights == "random" or not spec.quality.tasks:
        context.add_asset_metadata({"skipped": "random weights carry no quality" if spec.model.weights == "random"
                                    else "no quality tasks in the spec"}, partition_key=key)
        return contract.empty_frame()
    cache = store_folder(QUALITY_CACHE, quality_key(spec))
    if is_stored(cache):
        frame = read_stored(cache)
        context.log.info(f"{key}: quality reused from {cache}")
    else:
        from wattcounts_pipeline.quality.runner import evaluate_quality  # lm-eval: only where scores are computed

        rows = evaluate_quality(
            framework=spec.framework, model_path=resolve_spec_model(spec)[0], quantization=spec.quantization,
            model_name=spec.model.name, model_revision=spec.model.revision, tasks=list(spec.quality.tasks),
            limit=spec.quality.limit, num_fewshot=spec.quality.num_fewshot, dtype=spec.dtype)
        result = validate_table("quality", pd.DataFrame(rows), source=f"quality_scores[{key}]")
        if not result.ok:
            raise dg.Failure(f"{key}: quality rows break schemas/quality.yaml; nothing stored",
                             metadata={"failures": dg.MetadataValue.md(result.failures.to_markdown(index=False))})
        frame = result.valid
        write_stored(cache, frame)
    context.add_asset_metadata({"scores": dg.MetadataValue.md(
        frame[["task", "metric", "value", "stderr", "n_samples"]].to_markdown(index=False))}, partition_key=key)
    return frame
