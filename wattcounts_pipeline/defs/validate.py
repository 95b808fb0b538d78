"""Stage 2: validate measurements against schemas/ and physics; quarantine failing rows."""

import dagster as dg
import pandas as pd

from wattcounts_pipeline.core.validation import ValidationResult, validate_partitions
from wattcounts_pipeline.defs.fleet import partition_backfill_policy
from wattcounts_pipeline.defs.io import BY_PARTITION, ByPartition, store_folder, write_stored
from wattcounts_pipeline.defs.resources import experiment_partitions

CHECKED_TABLES = ("runs", "requests")
QUARANTINE = "quarantine"  # <store>/quarantine/<partition>/: failing rows with their reasons, beside the assets


def check_result(asset: str, result: ValidationResult) -> dg.AssetCheckResult:
    """A check result whose metadata carries the failure table, so the UI shows what failed and why."""
    metadata: dict[str, dg.MetadataValue] = {
        "valid_rows": dg.MetadataValue.int(len(result.valid)),
        "quarantined_rows": dg.MetadataValue.int(len(result.quarantine)),
    }
    if not result.ok:
        metadata["failures"] = dg.MetadataValue.md(result.failures.head(50).to_markdown(index=False))
    return dg.AssetCheckResult(asset_key=asset, check_name=f"{result.table}_contract", passed=result.ok,
                               metadata=metadata)


def merged(table: str, results: dict[str, ValidationResult]) -> ValidationResult:
    """One result for the partitions of a run (one check per step), failures named by partition."""
    def frames(attr: str) -> pd.DataFrame:
        parts = [getattr(r, attr).assign(partition=key) for key, r in results.items() if not getattr(r, attr).empty]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    if len(results) == 1:
        return next(iter(results.values()))
    return ValidationResult(table, frames("valid"), frames("quarantine"), frames("failures"))


@dg.asset(
    partitions_def=experiment_partitions,
    group_name="validate",
    kinds={"pandas", "pandera"},
    ins={"measurements": dg.AssetIn(metadata=BY_PARTITION)},
    backfill_policy=partition_backfill_policy(),  # defs/fleet.py: one run for all partitions on one machine
    check_specs=[dg.AssetCheckSpec(f"{t}_contract", asset="validated_measurements", blocking=True,
                                   description=f"Every {t} row meets schemas/{t}.yaml and physical plausibility.")
                 for t in CHECKED_TABLES],
)
def validated_measurements(context: dg.AssetExecutionContext, measurements: ByPartition):
    """Validates run and request rows with the Pandera schemas built from `schemas/` plus physical
    plausibility (J/token = energy / tokens, power within idle/limit bounds, NVML rows carry
    temperatures and clocks). Failing rows go to the quarantine table with their reasons; the blocking
    checks fail when anything was quarantined, so bad rows never reach a release."""
    out = ByPartition()
    keys = list(context.partition_keys)
    results = {table: validate_partitions(table, {key: measurements[key][table] for key in keys},
                                          {key: f"measurements[{key}].{table}" for key in keys})
               for table in CHECKED_TABLES}  # one Pandera pass per table for all partitions of the run
    for key in keys:
        tables = measurements[key]
        valid: dict[str, pd.DataFrame] = {}
        quarantine: dict[str, pd.DataFrame] = {}
        for table in CHECKED_TABLES:
            result = results[table][key]
            valid[table] = result.valid
            if not result.ok:
                quarantine[table] = result.quarantine.astype(str)
        if quarantine:
            write_stored(store_folder(QUARANTINE, key), quarantine)
        valid["power_traces"] = tables.get("power_traces", pd.DataFrame())
        context.add_asset_metadata({"quarantined_rows": sum(len(q) for q in quarantine.values())}, partition_key=key)
        out[key] = valid
    yield dg.Output(out)
    for table in CHECKED_TABLES:
        yield check_result("validated_measurements", merged(table, results[table]))
