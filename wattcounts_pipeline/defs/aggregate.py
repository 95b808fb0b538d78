"""Stage 4: one row per configuration, from every validated partition and the quality scores."""

import base64
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.core.vocab import MEASURED_TABLES
from wattcounts_pipeline.defs.validate import check_result
from wattcounts_pipeline.quality.derive import release_quality


def collect_tables(validated_measurements: dict[str, pd.DataFrame], quality_scores: pd.DataFrame,
                   contributed: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Our validated rows plus every accepted submission's rows (`contributed`, the `submissions` asset's
    partitions concatenated): what the next release holds."""
    tables: dict[str, pd.DataFrame] = {}
    for name in MEASURED_TABLES:
        parts = [f for f in (validated_measurements.get(name), contributed.get(name))
                 if isinstance(f, pd.DataFrame) and not f.empty]
        if parts:
            tables[name] = pd.concat(parts, ignore_index=True)
        elif name != "power_traces":  # traces are optional: no table rather than an empty one
            tables[name] = load_contract(name).empty_frame()
    credits = contributed.get("submissions")
    if isinstance(credits, pd.DataFrame) and not credits.empty:  # attribution of contributed rows
        tables["submissions"] = credits
    has_quality = isinstance(quality_scores, pd.DataFrame) and not quality_scores.empty
    tables["quality"] = release_quality(quality_scores if has_quality else load_contract("quality").empty_frame(),
                                        tables["runs"])
    return tables


@dg.asset(
    group_name="aggregate",
    kinds={"pandas"},
    # quality_scores: {} while no partition has been registered yet, a frame after
    ins={"validated_measurements": dg.AssetIn(), "quality_scores": dg.AssetIn(dagster_type=dg.Any),
         "submissions": dg.AssetIn()},
)
def release_tables(context: dg.AssetExecutionContext, validated_measurements: dict[str, pd.DataFrame],
                   quality_scores: pd.DataFrame, submissions: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every row the next release holds, collected once from the asset store: validated runs, requests and power
    traces of every partition, accepted submissions with their attribution, and quality with its source
    (measured, published or derived). `configurations` and `dataset_release` both read it."""
    tables = collect_tables(validated_measurements, quality_scores, submissions)
    context.add_output_metadata({"rows": dg.MetadataValue.json({k: len(v) for k, v in tables.items()})})
    return tables


@dg.asset(
    group_name="aggregate",
    kinds={"pandas"},
    ins={"release_tables": dg.AssetIn()},
    check_specs=[dg.AssetCheckSpec("configurations_contract", asset="configurations", blocking=True)],
)
def configurations(context: dg.AssetExecutionContext, release_tables: dict[str, pd.DataFrame]):
    """Aggregates the release's rows into one row per configuration: mean J/token with its 95%
    confidence interval, J/request, tokens/s, TTFT/TPOT/latency percentiles, cost and CO2 per 1M
    tokens, and the quality of the same model + quantization + framework (plotted against J/token,
    Pareto front marked). Accepted community submissions join here with their provenance in `source`."""
    from wattcounts_pipeline.aggregate import aggregate  # scipy, matplotlib: only in the step that needs them
    from wattcounts_pipeline.hub.figures import quality_energy_figure

    table = aggregate(release_tables["runs"], release_tables["requests"], release_tables["quality"])
    result = validate_table("configurations", table, source="configurations")
    show = ["configuration_id", "energy_per_token_j", "energy_per_token_j_ci95_low",
            "energy_per_token_j_ci95_high", "tokens_per_s", "quality_acc_mean", "energy_method"]
    metadata: dict[str, Any] = {"configurations": len(result.valid),
                "table": dg.MetadataValue.md(result.valid[show].to_markdown(index=False))}
    with tempfile.TemporaryDirectory() as tmp:
        figure = quality_energy_figure(result.valid, Path(tmp) / "quality_vs_energy.png")
        if figure is not None:
            png = base64.b64encode(figure.read_bytes()).decode()
            metadata["quality_vs_energy"] = dg.MetadataValue.md(f"![quality vs J/token](data:image/png;base64,{png})")
    yield dg.Output(result.valid, metadata=metadata)
    yield check_result("configurations", result)
