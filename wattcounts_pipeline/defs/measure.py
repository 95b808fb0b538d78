"""Stage 1: measure one experiment spec per partition."""

import json

import dagster as dg
import pandas as pd

from wattcounts_pipeline.defs.resources import ExperimentsResource, MeterResource, experiment_partitions
from wattcounts_pipeline.measure import measure_spec
from wattcounts_pipeline.sweep import find_recorded


@dg.asset(
    partitions_def=experiment_partitions,
    group_name="measure",
    kinds={"python", "pytorch"},
    pool="measurement",  # one measurement at a time per device pool: runs must never overlap on one GPU
    code_version="1",
)
def measurements(context: dg.AssetExecutionContext, experiments: ExperimentsResource,
                 meter: MeterResource) -> dict[str, pd.DataFrame]:
    """Runs the partition's workload through its framework under the best energy meter present
    (NVML, else RAPL, else a CPU-time estimate labelled `estimate`): idle baseline, warm-up, then
    repeated measured windows. Partitions measured on another host (a GPU sweep committed under
    `data/measurements/`) are served from those recorded rows. Returns runs, requests, power traces."""
    spec = experiments.spec(context.partition_key)
    recorded = find_recorded(spec.key, experiments.recorded_dirs())
    if recorded is not None:  # measured on another host (e.g. a GPU sweep) and committed under data/
        folder, tables = recorded
        context.add_output_metadata({"recorded_in": dg.MetadataValue.path(str(folder))})
    else:
        energy_meter = meter.create(gpus=spec.gpus)
        try:
            result = measure_spec(spec, energy_meter)
        finally:
            energy_meter.close()
        tables = {"runs": result.runs, "requests": result.requests, "power_traces": result.traces}
    runs = tables["runs"]
    context.add_output_metadata({
        "spec": dg.MetadataValue.json(json.loads(json.dumps(spec.to_dict(), default=str))),
        "energy_method": runs["energy_method"].iloc[0],
        "energy_per_token_j_mean": float(runs["energy_per_token_j"].mean()),
        "tokens_per_s_mean": float(runs["tokens_per_s"].mean()),
        "runs": dg.MetadataValue.md(runs[["run_id", "duration_s", "energy_j", "tokens_per_s",
                                          "energy_per_token_j"]].to_markdown(index=False)),
    })
    return tables
