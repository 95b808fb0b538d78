"""Stage 2: validate measurements against schemas/ and physics; quarantine failing rows."""

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.validation import ValidationResult, validate_table
from wattcounts_pipeline.defs.io import write_value
from wattcounts_pipeline.defs.resources import experiment_partitions

CHECKED_TABLES = ("runs", "requests")


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


@dg.asset(
    partitions_def=experiment_partitions,
    group_name="validate",
    kinds={"pandas", "pandera"},
    check_specs=[dg.AssetCheckSpec(f"{t}_contract", asset="validated_measurements", blocking=True,
                                   description=f"Every {t} row meets schemas/{t}.yaml and physical plausibility.")
                 for t in CHECKED_TABLES],
)
def validated_measurements(context: dg.AssetExecutionContext, measurements: dict[str, pd.DataFrame]):
    """Validates run and request rows with the Pandera schemas built from `schemas/` plus physical
    plausibility (J/token = energy / tokens, power within idle/limit bounds, NVML rows carry
    temperatures and clocks). Failing rows go to the quarantine table with their reasons; the blocking
    checks fail when anything was quarantined, so bad rows never reach a release."""
    valid: dict[str, pd.DataFrame] = {}
    quarantine: dict[str, pd.DataFrame] = {}
    checks = []
    for table in CHECKED_TABLES:
        result = validate_table(table, measurements[table], source=f"measurements[{context.partition_key}].{table}")
        valid[table] = result.valid
        if not result.ok:
            quarantine[table] = result.quarantine.astype(str)
        checks.append(check_result("validated_measurements", result))
    if quarantine:
        write_value(paths.subdir("quarantine") / context.partition_key, quarantine)
    valid["power_traces"] = measurements.get("power_traces", pd.DataFrame())
    yield dg.Output(valid, metadata={"quarantined_rows": sum(len(q) for q in quarantine.values())})
    yield from checks
