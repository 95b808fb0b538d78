"""Stage 4: one row per configuration, from every validated partition and the quality scores."""

import base64
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.core.vocab import MEASURED_TABLES
from wattcounts_pipeline.defs.validate import check_result
from wattcounts_pipeline.quality.derive import release_quality


def collect_tables(validated_measurements: dict[str, pd.DataFrame], quality_scores: pd.DataFrame
                   ) -> dict[str, pd.DataFrame]:
    """Our validated rows plus every accepted submission's rows: what the next release holds."""
    from wattcounts_pipeline.submissions.store import accepted_tables

    contributed = accepted_tables(paths.subdir("submissions"))
    tables: dict[str, pd.DataFrame] = {}
    for name in MEASURED_TABLES:
        parts = [f for f in (validated_measurements.get(name), contributed.get(name))
                 if isinstance(f, pd.DataFrame) and not f.empty]
        if parts:
            tables[name] = pd.concat(parts, ignore_index=True)
        elif name != "power_traces":  # traces are optional: no table rather than an empty one
            tables[name] = load_contract(name).empty_frame()
    if not contributed.get("submissions", pd.DataFrame()).empty:  # attribution of contributed rows
        tables["submissions"] = contributed["submissions"]
    has_quality = isinstance(quality_scores, pd.DataFrame) and not quality_scores.empty
    tables["quality"] = release_quality(quality_scores if has_quality else load_contract("quality").empty_frame(),
                                        tables["runs"])
    return tables


@dg.asset(
    group_name="aggregate",
    kinds={"pandas"},
    ins={"validated_measurements": dg.AssetIn(), "quality_scores": dg.AssetIn()},
    deps=["submissions"],
    check_specs=[dg.AssetCheckSpec("configurations_contract", asset="configurations", blocking=True)],
)
def configurations(context: dg.AssetExecutionContext, validated_measurements: dict[str, pd.DataFrame],
                   quality_scores: pd.DataFrame):
    """Aggregates every validated partition into one row per configuration: mean J/token with its 95%
    confidence interval, J/request, tokens/s, TTFT/TPOT/latency percentiles, cost and CO2 per 1M
    tokens, and the quality of the same model + quantization + framework (plotted against J/token,
    Pareto front marked). Accepted community submissions join here with their provenance in `source`."""
    from wattcounts_pipeline.aggregate import aggregate  # scipy, matplotlib: only in the step that needs them
    from wattcounts_pipeline.hub.figures import quality_energy_figure

    tables = collect_tables(validated_measurements, quality_scores)
    table = aggregate(tables["runs"], tables["requests"], tables["quality"])
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
