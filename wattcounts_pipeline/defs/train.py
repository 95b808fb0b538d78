"""Stage 6: the predictive model, trained on exactly one dataset release (its tag pinned), and a
recommendation with its Pareto front."""

import base64
import json
from pathlib import Path

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.vocab import PREDICTORS_SUBDIR


def predictors_dir() -> Path:
    return paths.subdir(PREDICTORS_SUBDIR)  # where `wattcounts recommend` looks by default


@dg.asset(group_name="train", kinds={"scikitlearn"}, ins={"dataset_release": dg.AssetIn()})
def energy_model(context: dg.AssetExecutionContext, dataset_release: dict[str, str]) -> dict[str, str]:
    """Trains the energy/speed/quality predictor on the release's configurations table (tag pinned in
    the model card), saved as plain JSON numbers (nothing pickled) beside its model card. Its cross-validation
    is `predictor_evaluation`, so the recommendation does not wait for it."""
    from wattcounts_pipeline.model import train

    tag = dataset_release["tag"]
    table = pd.read_parquet(Path(dataset_release["path"]) / "data" / "configurations.parquet")
    model_dir = train(table, tag, predictors_dir())
    metrics = json.loads((model_dir / "metrics.json").read_text())
    context.add_output_metadata({"release_tag": tag, "release_commit": dataset_release["commit"],
                                 "path": dg.MetadataValue.path(str(model_dir)), "training_rows": len(table),
                                 "metrics": dg.MetadataValue.json(metrics),
                                 "model_card": dg.MetadataValue.md((model_dir / "model_card.md").read_text())})
    return {"release_tag": tag, "path": str(model_dir)}


@dg.asset(group_name="train", kinds={"scikitlearn"},
          ins={"dataset_release": dg.AssetIn(), "energy_model": dg.AssetIn()})
def predictor_evaluation(context: dg.AssetExecutionContext, dataset_release: dict[str, str],
                         energy_model: dict[str, str]) -> dict[str, str]:
    """How wrong the predictor is out of sample: grouped cross-validation (leave one architecture / hardware /
    framework out) against two baselines, on the release it was trained on, written beside its model card."""
    from wattcounts_pipeline.model import cross_validate_release
    from wattcounts_pipeline.model.registry import CV_CARD, EVALUATION_FOLDER

    table = pd.read_parquet(Path(dataset_release["path"]) / "data" / "configurations.parquet")
    cv = cross_validate_release(table, energy_model["release_tag"], predictors_dir())
    folder = Path(energy_model["path"]) / EVALUATION_FOLDER
    context.add_output_metadata({"release_tag": energy_model["release_tag"], "path": dg.MetadataValue.path(str(folder)),
                                 "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in cv.attrs["notes"]) or "none"),
                                 "cross_validation": dg.MetadataValue.md((folder / CV_CARD).read_text())})
    return {"release_tag": energy_model["release_tag"], "path": str(folder)}


class RecommendationConfig(dg.Config):
    """As `wattcounts recommend`'s flags; a price left unset (None) comes from the catalog (model/costs.py)."""

    hardware: str = "H200"
    scenario: str = "chat"
    currency: str = "USD"
    electricity_per_kwh: float | None = None  # in `currency`; None: the default 0.15 USD, converted
    gpu_hour_price: float | None = None  # in `currency`; None: the catalog's on-demand price for the hardware
    region: str | None = None  # grid for carbon (ISO alpha-3 or cloud region); None: the flat default
    carbon_g_per_kwh: float | None = None
    best_by: str = "energy"


@dg.asset(group_name="train", kinds={"python"}, ins={"energy_model": dg.AssetIn()})
def recommendation(context: dg.AssetExecutionContext, config: RecommendationConfig,
                   energy_model: dict[str, str]) -> pd.DataFrame:
    """The Pareto front (energy, cost, latency, quality) and best configuration for a scenario on a
    machine, from the predictor of the pinned release; the front's plot shows in the UI."""
    from wattcounts_pipeline.model import load, plot_front, recommend
    from wattcounts_pipeline.model.catalog import get_hardware
    from wattcounts_pipeline.model.costs import resolve_costs

    predictor = load(predictors_dir(), energy_model["release_tag"])
    hw = get_hardware(config.hardware)
    costs = resolve_costs(hw.key, hw.is_gpu, currency=config.currency, electricity_per_kwh=config.electricity_per_kwh,
                          gpu_hour=config.gpu_hour_price, region=config.region,
                          carbon_g_per_kwh=config.carbon_g_per_kwh)
    rec = recommend(predictor, hw.key, config.scenario, costs=costs, best_by=config.best_by)
    png = base64.b64encode(plot_front(rec)).decode()
    context.add_output_metadata({
        "best": dg.MetadataValue.json(json.loads(rec.best.to_json())) if rec.best is not None
        else dg.MetadataValue.text("none"),
        "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in rec.warnings) or "none"),
        "costs": dg.MetadataValue.json({"currency": costs.currency, **costs.sources}),
        "front": dg.MetadataValue.md(rec.front.head(20).to_markdown(index=False)),
        "plot": dg.MetadataValue.md(f"![Pareto front](data:image/png;base64,{png})"),
    })
    return rec.front
