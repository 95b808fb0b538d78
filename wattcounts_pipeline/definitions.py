"""The Dagster entry point: measure → validate → quality → aggregate → publish → train → explorer, plus submissions
and serving load curves."""

import os

import dagster as dg

from wattcounts_pipeline.defs.aggregate import configurations, release_tables
from wattcounts_pipeline.defs.explorer import release_explorer
from wattcounts_pipeline.defs.fleet import (
    experiments_resource,
    fleet_executor,
    measure_on_hardware,
    validate_after_measurement,
    validate_measured,
)
from wattcounts_pipeline.defs.io import TableStoreIOManager
from wattcounts_pipeline.defs.measure import measurements
from wattcounts_pipeline.defs.publish import HubResource, dataset_release
from wattcounts_pipeline.defs.quality import quality_scores
from wattcounts_pipeline.defs.resources import ExperimentsResource, MeterResource, register_experiments
from wattcounts_pipeline.defs.serving import load_curves
from wattcounts_pipeline.defs.submissions import submissions, submissions_inbox_sensor
from wattcounts_pipeline.defs.train import energy_model, predictor_evaluation, recommendation
from wattcounts_pipeline.defs.validate import validated_measurements


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def experiment_sensor(context: dg.SensorEvaluationContext, experiments: ExperimentsResource) -> dg.SkipReason:
    """Registers a partition for each new spec in the experiment files (never a duplicate)."""
    new = register_experiments(context.instance, experiments)
    return dg.SkipReason(f"registered {len(new)} new partition(s)" if new else "no new specs")


defs = dg.Definitions(
    assets=[measurements, validated_measurements, quality_scores, release_tables, configurations, dataset_release,
            energy_model, predictor_evaluation, recommendation, release_explorer, submissions, load_curves],
    jobs=[measure_on_hardware, validate_measured],
    sensors=[experiment_sensor, submissions_inbox_sensor, validate_after_measurement],
    # WATTCOUNTS_EXECUTOR=k8s|celery for a fleet (README "Running on a fleet"); unset: Dagster's default
    executor=fleet_executor(),
    resources={
        "io_manager": TableStoreIOManager(),  # $WATTCOUNTS_STORE: one store every host writes to
        "experiments": experiments_resource(),
        "meter": MeterResource(),
        # HF_TOKEN stays an EnvVar reference: its value never shows in the UI, logs or run config
        "hub": HubResource(repo_id=os.environ.get("WATTCOUNTS_HUB_REPO", ""),
                           token=dg.EnvVar("HF_TOKEN") if os.environ.get("HF_TOKEN") else None,
                           endpoint=os.environ.get("WATTCOUNTS_HUB_ENDPOINT", "")),
    },
)
