"""Materialize the whole graph for every registered partition, as "Materialize all" does, and time it.

Usage (same DAGSTER_HOME and WATTCOUNTS_HOME as the UI):
    wattcounts register && python benchmarks/default_pipeline.py
Prints one JSON line per stage and the total; the goal is ≤ 15 minutes on a 2-core CPU machine.
"""

from __future__ import annotations

import json
import os
import time

import dagster as dg

from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.resources import experiment_partitions

PER_PARTITION = ["measurements", "validated_measurements", "quality_scores"]
DOWNSTREAM = ["release_tables", "configurations", "dataset_release", "energy_model", "recommendation"]


def main() -> None:
    assets = list(defs.assets or [])
    resources = dict(defs.resources or {})
    start = time.perf_counter()
    failed = []
    with dg.DagsterInstance.get() as instance:
        keys = instance.get_dynamic_partitions(experiment_partitions.name)
        for key in keys:
            t0 = time.perf_counter()
            result = dg.materialize(assets, selection=PER_PARTITION, instance=instance, resources=resources,
                                    partition_key=key, raise_on_error=False)
            if not result.success:
                failed.append(key)
            print(json.dumps({"partition": key, "success": result.success,
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        t0 = time.perf_counter()
        result = dg.materialize(assets, selection=DOWNSTREAM, instance=instance, resources=resources,
                                raise_on_error=False)
        release = result.output_for_node("dataset_release")
        downstream_failed = [e.step_key for e in result.get_step_failure_events()]
    total = time.perf_counter() - start
    print(json.dumps({"downstream_seconds": round(time.perf_counter() - t0, 1), "partitions": len(keys),
                      "failed": failed, "downstream_failed": downstream_failed, "release": release["tag"],
                      "release_path": release["path"], "total_seconds": round(total, 1), "cpus": os.cpu_count()}),
          flush=True)


if __name__ == "__main__":
    main()
