"""Stage 1: measure one experiment spec per partition."""

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from wattcounts_pipeline.defs.fleet import partition_backfill_policy
from wattcounts_pipeline.defs.io import ByPartition
from wattcounts_pipeline.defs.resources import ExperimentsResource, MeterResource, experiment_partitions
from wattcounts_pipeline.measure.run import measure_spec
from wattcounts_pipeline.measure.store import find_recorded


@dg.asset(
    partitions_def=experiment_partitions,
    group_name="measure",
    kinds={"python", "pytorch"},
    pool="measurement",  # one measurement at a time per device pool: runs must never overlap on one GPU
    # "Materialize all": one run, one step for every partition (a recorded one costs milliseconds, a process
    # per partition seconds); the partitions measured live inside it run one after the other
    backfill_policy=partition_backfill_policy(),  # defs/fleet.py: one run for all partitions on one machine
    code_version="1",
)
def measurements(context: dg.AssetExecutionContext, experiments: ExperimentsResource,
                 meter: MeterResource) -> ByPartition:
    """Runs the partition's workload through its framework under the best energy meter present
    (NVML, else RAPL, else a CPU-time estimate labelled `estimate`): idle baseline, warm-up, then
    repeated measured windows. Partitions measured on another host (a GPU sweep committed under
    `data/measurements/`) are served from those recorded rows. Returns runs, requests, power traces
    for each partition of the run."""
    recorded_dirs = experiments.recorded_dirs()
    return ByPartition({key: _measure_partition(context, key, experiments, meter, recorded_dirs)
                        for key in context.partition_keys})


def _measure_partition(context: dg.AssetExecutionContext, key: str, experiments: ExperimentsResource,
                       meter: MeterResource, recorded_dirs: list[Path]) -> dict[str, pd.DataFrame]:
    started = time.perf_counter()
    spec = experiments.spec(key)
    recorded = find_recorded(spec.key, recorded_dirs)
    metadata: dict[str, object] = {}
    if recorded is not None:  # measured on another host (e.g. a GPU sweep) and committed under data/
        folders, tables = recorded
        metadata["recorded_in"] = dg.MetadataValue.json([str(folder) for folder in folders])
        source = f"served from {', '.join(folder.name for folder in folders)}"
    else:
        energy_meter = meter.create(gpus=spec.gpus)
        try:
            result = measure_spec(spec, energy_meter)
        finally:
            energy_meter.close()
        tables = {"runs": result.runs, "requests": result.requests, "power_traces": result.traces}
        source = "measured live"
    runs = tables["runs"]
    duration_s = time.perf_counter() - started
    context.log.info(f"{key}: {source} in {duration_s:.1f} s")
    context.add_asset_metadata({
        **metadata,
        "duration_s": round(duration_s, 3),  # this partition's share of the step: serving rows or measuring live
        "spec": dg.MetadataValue.json(json.loads(json.dumps(spec.to_dict(), default=str))),
        "energy_method": runs["energy_method"].iloc[0],
        "energy_per_token_j_mean": float(runs["energy_per_token_j"].mean()),
        "tokens_per_s_mean": float(runs["tokens_per_s"].mean()),
        "runs": dg.MetadataValue.md(runs[["run_id", "duration_s", "energy_j", "tokens_per_s",
                                          "energy_per_token_j"]].to_markdown(index=False)),
    }, partition_key=key)
    return tables
