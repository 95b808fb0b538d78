"""Stage 7: the release's public explorer page, with the predictor's answers for common cards precomputed."""

import json
from pathlib import Path
from typing import Any

import dagster as dg

from wattcounts_pipeline import paths
from wattcounts_pipeline.defs.train import predictors_dir

EXPLORER_HARDWARE = ("H200", "H100-SXM", "A100-80GB", "L40S", "L4")  # the recommend form's cards


def precomputed_recommendations(release_tag: str, hardware: tuple[str, ...] = EXPLORER_HARDWARE
                                ) -> list[dict[str, Any]]:
    """The predictor's best configuration for each card × built-in scenario (a static page cannot run it), each
    with its warnings and, when nothing meets the needs, why."""
    from wattcounts_pipeline.model import SCENARIOS, load, recommend

    predictor = load(predictors_dir(), release_tag)
    out = []
    for card in hardware:
        for scenario in SCENARIOS:
            rec = recommend(predictor, card, scenario)
            out.append({"hardware": rec.hardware, "scenario": scenario,
                        "source": f"predictor {release_tag}, best by energy; total cost in {rec.costs.currency} "
                                  f"({rec.costs.sources.get('gpu_hour', '')}); quality as labelled",
                        "best": None if rec.best is None else json.loads(rec.best.to_json()),
                        "warnings": rec.warnings, "unmet": rec.unmet_needs()})
    return out


@dg.asset(group_name="publish", kinds={"html"}, ins={"dataset_release": dg.AssetIn(), "energy_model": dg.AssetIn()})
def release_explorer(context: dg.AssetExecutionContext, dataset_release: dict[str, str],
                     energy_model: dict[str, str]) -> dict[str, str]:
    """The release's explorer page (one static HTML file, a Hugging Face static Space as is): the leaderboard
    with filters, the quality-vs-energy and cost fronts, each configuration's provenance, and a recommend form
    with the predictor's answers for common cards precomputed. Open `index.html` in a browser."""
    from wattcounts_pipeline.hub.explorer import build_explorer

    tag = dataset_release["tag"]
    index = build_explorer(Path(dataset_release["path"]), paths.subdir("explorer", tag),
                           precomputed_recommendations(energy_model["release_tag"]))
    context.add_output_metadata({"path": dg.MetadataValue.path(str(index)), "release_tag": tag,
                                 "bytes": index.stat().st_size})
    return {"tag": tag, "path": str(index)}
