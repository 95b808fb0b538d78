"""Stage 6: the predictive model, trained on exactly one dataset release (its tag pinned)."""

from pathlib import Path

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths


@dg.asset(group_name="train", kinds={"scikitlearn"}, ins={"dataset_release": dg.AssetIn()})
def energy_model(context: dg.AssetExecutionContext, dataset_release: dict[str, str]) -> dict[str, str]:
    """Trains the energy/speed/quality predictor on the release's configurations table (tag pinned in
    the model card), with grouped cross-validation errors, saved in a safe format beside its card."""
    from wattcounts_pipeline.model.train import train

    tag = dataset_release["tag"]
    table = pd.read_parquet(Path(dataset_release["path"]) / "data" / "configurations.parquet")
    model_dir = train(table, tag, paths.subdir("models"))
    card = (model_dir / "model_card.md").read_text()
    context.add_output_metadata({"release_tag": tag, "release_commit": dataset_release["commit"],
                                 "path": dg.MetadataValue.path(str(model_dir)),
                                 "training_rows": len(table), "model_card": dg.MetadataValue.md(card)})
    return {"release_tag": tag, "path": str(model_dir)}
