"""Serving: the load sweeps of the experiment files' `serving:` sections, their rows and curve plot."""

import base64
from pathlib import Path

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.contracts import load_contract
from wattcounts_pipeline.core.errors import SpecError
from wattcounts_pipeline.core.validation import validate_table
from wattcounts_pipeline.defs.resources import ExperimentsResource, MeterResource
from wattcounts_pipeline.serving.spec import ServingSpec, load_serving
from wattcounts_pipeline.serving.store import merge_load_points, recorded_load_points
from wattcounts_pipeline.serving.sweep import SweepResult, level_text, run_sweep


def serving_specs(experiments: ExperimentsResource) -> list[ServingSpec]:
    """Every serving sweep of the experiment files, in file order (a broken file fails the asset by name)."""
    specs: dict[str, ServingSpec] = {}
    for path in experiments.paths():
        for spec in load_serving(path):
            specs.setdefault(spec.key, spec)
    return list(specs.values())


def _plot(frame: pd.DataFrame) -> tuple[Path, str]:
    """The curve plot written to $WATTCOUNTS_HOME/serving/load_curves.png, and as Markdown with the PNG inline,
    which the Dagster UI shows on the asset."""
    from wattcounts_pipeline.hub.figures import load_curve_figure  # matplotlib: this step only

    path = load_curve_figure(frame, paths.subdir("serving") / "load_curves.png")
    return path, f"![load curves](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"


def _failures_markdown(results: list[SweepResult]) -> str:
    parts = []
    for r in results:
        if r.failure is not None:
            f = r.failure
            parts.append(f"**{f.sweep_id}**, load point {f.point_index} ({level_text(f.load_mode, f.level)}):\n\n"
                         f"```\n{f.error}\n```")
    return "\n\n".join(parts) or "no failed load point"


@dg.asset(
    group_name="serving",
    kinds={"python", "llamacpp"},
    pool="measurement",  # a sweep must never overlap a measurement on the same machine
    check_specs=[dg.AssetCheckSpec("load_points_contract", asset="load_curves",
                                   description="Every load point meets schemas/load_points.yaml and its cross-checks."),
                 dg.AssetCheckSpec("sweeps_complete", asset="load_curves",
                                   description="No load point failed (a dead or stalled server); failures carry the "
                                               "server's log tail.")],
)
def load_curves(context: dg.AssetExecutionContext, experiments: ExperimentsResource, meter: MeterResource):
    """Runs each serving sweep of the experiment files (a server, its idle draw, then rising load: N users or
    Poisson arrivals until throughput stops rising or the SLO breaks) under the best meter present, adds the
    sweeps recorded on GPU hosts (`serving_*.jsonl` under the recorded folders, data/measurements/), and returns
    one validated row per load point: offered and achieved rate, J/request and J/output token (gross and net),
    TTFT/TPOT/E2E percentiles, SLO attainment and goodput, the server's own gauges. A failed point keeps the points
    before it; its error and the server's log tail show in the `sweeps_complete` check. The metadata carries the
    curve plot (J/request and p90 TPOT against request rate, SLO line marked)."""
    try:
        specs = serving_specs(experiments)
    except SpecError as exc:
        raise dg.Failure(str(exc)) from exc
    results = []
    for spec in specs:
        energy_meter = meter.create(gpus=None)
        try:
            context.log.info(f"serving sweep {spec.key}: {spec.load.mode} loop, levels {spec.load.levels()}")
            results.append(run_sweep(spec, energy_meter))
        finally:
            energy_meter.close()
    rows = [row for r in results for row in r.rows]
    try:
        recorded = recorded_load_points(experiments.recorded_dirs())
    except SpecError as exc:
        raise dg.Failure(str(exc)) from exc
    frame = merge_load_points(pd.DataFrame(rows), recorded)
    if frame.empty:
        frame = load_contract("load_points").empty_frame()
    checked = validate_table("load_points", frame, source="load_curves")
    shown = ["sweep_id", "point_index", "users", "offered_rate_per_s", "achieved_rate_per_s",
             "energy_per_request_j", "energy_per_output_token_j", "ttft_p90_s", "tpot_p90_s", "slo_attainment",
             "saturated"]
    png, plot_markdown = _plot(checked.valid)
    yield dg.Output(checked.valid, metadata={
        "load_points": len(checked.valid), "sweeps": len(specs),
        "recorded_sweeps": int(recorded["sweep_id"].nunique()) if not recorded.empty else 0,
        "stop_reasons": dg.MetadataValue.json({r.spec.key: r.stop_reason for r in results}),
        "energy_method": ", ".join(sorted(set(checked.valid["energy_method"]))) or "none",
        "table": dg.MetadataValue.md(checked.valid[shown].to_markdown(index=False, floatfmt=".4g")
                                     if not checked.valid.empty else "no load points"),
        "curves": dg.MetadataValue.md(plot_markdown), "curves_png": dg.MetadataValue.path(str(png)),
    })
    yield dg.AssetCheckResult(check_name="load_points_contract", passed=checked.ok,
                              metadata={"quarantined": len(checked.quarantine),
                                        "reasons": dg.MetadataValue.md("\n".join(
                                            f"- {r}" for r in checked.quarantine.get("reason", []))
                                            or "none")})
    failed = [r for r in results if r.failure is not None]
    yield dg.AssetCheckResult(check_name="sweeps_complete", passed=not failed,
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"failed_points": len(failed),
                                        "failures": dg.MetadataValue.md(_failures_markdown(results))})
