"""Issue #20: how many configurations of the recorded release carry a quality value, by source, and which do not.

Builds the release of every configuration under data/measurements/ exactly as `scripts/ship_predictor.py` does
(benchmarks/recorded_release.py with `quality=True`: published and derived quality joined as the pipeline joins it)
and counts, over configurations of public architectures (a model whose models/configs/<model>/config.json names the
public checkpoint it copies, `_source_model`), how many have `quality_acc_mean`, by `quality_source`, then lists
every (model, quantization, framework, GPU) group still without one. It also checks the two provenance rules the
release must keep: no random-weight configuration has a measured value, and every value has a citation (published)
or a recipe (derived) in the quality table.

    python benchmarks/quality_coverage.py [--out benchmarks/results/quality_coverage.txt]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recorded_release import ROOT, release_from_folders

from wattcounts_pipeline import paths


def public_models() -> dict[str, str]:
    """model → the public checkpoint its architecture config was copied from."""
    out = {}
    for config in sorted((paths.MODELS_DIR / "configs").glob("*/config.json")):
        source = json.loads(config.read_text(encoding="utf-8")).get("_source_model")
        if source:
            out[config.parent.name] = source
    return out


def coverage_report(configurations: pd.DataFrame, quality: pd.DataFrame, public: dict[str, str]) -> tuple[str, int]:
    """The report's text and the number of problems (uncovered public configurations + provenance violations)."""
    c = configurations[configurations["model"].isin(public)]
    has = c["quality_acc_mean"].notna()
    lines = [(f"configurations in the release: {len(configurations)}; of public architectures: {len(c)} "
              f"({len(public)} architectures with a public checkpoint)"),
             f"with a quality value: {int(has.sum())}; without: {int((~has).sum())}", "", "by source:"]
    for source, n in c.loc[has, "quality_source"].value_counts().sort_index().items():
        lines.append(f"  {source:<10} {n}")
    random_measured = c[(c["weights"] == "random") & (c["quality_source"] == "measured")]
    lines.append(f"random-weight configurations with a measured value: {len(random_measured)}")
    derived_q = quality[quality["source"] == "derived"]
    published_q = quality[quality["source"] == "published"]
    no_recipe = int(derived_q["recipe"].isna().sum() + (derived_q["recipe"] == "").sum())
    no_citation = int(published_q["citation"].isna().sum() + (published_q["citation"] == "").sum())
    lines.append(f"quality rows: derived {len(derived_q)} (without recipe: {no_recipe}), "
                 f"published {len(published_q)} (without citation: {no_citation})")
    lines += ["", "by GPU (configurations with a value / all):"]
    for gpu, g in c.groupby(c["gpu_name"].fillna("(CPU)")):
        lines.append(f"  {gpu:<24} {int(g['quality_acc_mean'].notna().sum()):>3} / {len(g)}")
    lines += ["", "by model (configurations with a value / all; sources):"]
    for model, g in c.groupby("model"):
        sources = ",".join(sorted(g["quality_source"].dropna().unique())) or "-"
        lines.append(f"  {model:<16} {int(g['quality_acc_mean'].notna().sum()):>3} / {len(g):<3} {sources}")
    missing = c[~has].groupby(["model", "quantization", "framework", "gpu_name"], dropna=False).size()
    lines += ["", f"without a quality value ({int((~has).sum())} configurations, {len(missing)} groups):"]
    lines += [f"  {m:<16} {q:<16} {f:<16} {g}: {n}" for (m, q, f, g), n in missing.items()] or ["  (none)"]
    return "\n".join(lines) + "\n", int((~has).sum()) + len(random_measured) + no_recipe + no_citation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    folders = sorted(p for p in (paths.REPO_ROOT / ROOT).iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        release, stats = release_from_folders(folders, Path(tmp), quality=True)
        configurations = pd.read_parquet(release / "data" / "configurations.parquet")
        quality = pd.read_parquet(release / "data" / "quality.parquet")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                            cwd=paths.REPO_ROOT).stdout.strip()
    text, problems = coverage_report(configurations, quality, public_models())
    header = (f"# benchmarks/quality_coverage.py on the recorded release (data/measurements/, {len(folders)} folders, "
              f"{stats['configurations']} recorded configurations), code at {commit} + working tree\n")
    print(header + text, end="")
    if args.out:
        args.out.write_text(header + text, encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
