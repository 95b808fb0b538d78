"""Loads the definitions the way a Kubernetes code location does (WATTCOUNTS_EXECUTOR=k8s, set before
the import) and prints, as JSON, what tests/e2e/test_fleet_k8s.py checks: each job's executor, and for every
partition of $WATTCOUNTS_EXPERIMENTS its run tags, whether its run config validates against the job, and
the pod that dagster-k8s builds for its `measurements` step from that config."""

from __future__ import annotations

import json
import sys
from typing import Any

import dagster as dg
from dagster_k8s import DagsterK8sJobConfig, construct_dagster_k8s_job
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig

from wattcounts_pipeline.definitions import defs
from wattcounts_pipeline.defs.resources import ExperimentsResource


def step_pod(step_config: dict[str, Any]) -> dict[str, Any]:
    """The step pod's spec as the k8s_job_executor would submit it (same merge, same constructor)."""
    context = K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(step_config))
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="registry.lab.example/wattcounts:0.1.0", dagster_home="/opt/dagster/dagster_home",
                            instance_config_map="wattcounts-dagster-instance"),
        args=["dagster", "api", "execute_step"], job_name="dagster-step-probe",
        user_defined_k8s_config=context.run_k8s_config, component="step_worker")
    pod = job.spec.template.spec
    return {"node_selector": pod.node_selector or {},
            "tolerations": [t.to_dict() for t in pod.tolerations or []],
            "limits": pod.containers[0].resources.limits or {},
            "requests": pod.containers[0].resources.requests or {}}


def main() -> int:
    measure = defs.resolve_job_def("measure_on_hardware")
    out: dict[str, Any] = {
        "executors": {name: defs.resolve_job_def(name).executor_def.name
                      for name in ("measure_on_hardware", "validate_measured")},
        "implicit_executor": defs.resolve_implicit_global_asset_job_def().executor_def.name,
        "partitions": {},
    }
    for key in ExperimentsResource().specs():
        run_config = measure.get_run_config_for_partition_key(key)
        steps = run_config.get("execution", {}).get("config", {}).get("per_step_k8s_config", {})
        out["partitions"][key] = {
            "tags": dict(measure.get_tags_for_partition_key(key, selected_asset_keys=None)),
            "run_config_valid": dg.validate_run_config(measure, run_config) is not None,
            "stepped": sorted(steps),
            "pod": step_pod(steps["measurements"]) if "measurements" in steps else None,
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
