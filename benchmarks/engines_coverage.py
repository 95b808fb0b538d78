"""What a release adds over v0.1.0 on the GPU, counted the way the engines issue's acceptance counts it.

    python benchmarks/engines_coverage.py OUT_DIR [--version v0.2.0] [--md benchmarks/results/engines_coverage.md]

Builds two releases with the pipeline's library path (benchmarks/recorded_release.py, published and derived
quality joined): v0.1.0 again from the sweep folders it was built from (every folder of 2026-11-26, see the
README) and `--version` from every folder under data/measurements/, with v0.1.0 as its previous release, so the
new release's CHANGELOG.md says what was added. Then counts the new GPU configurations (a configuration is its id
on one card model) per engine, format and architecture, and which batch sizes and workloads they cover.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from recorded_release import ROOT, release_from_folders

from wattcounts_pipeline.hub.card import markdown_table

V0_1_0_DATE = "2026-11-26"
"""v0.1.0's GPU rows are the sweep folders of this day (README, "Results so far")."""
ENGINES = {"llamacpp": "llama.cpp in-process", "llamacpp-server": "llama.cpp server"}
QUANTIZERS = {"torchao": "torchao", "bnb": "bitsandbytes"}


def engine(row: pd.Series) -> str:
    """The engine a row measures: llama.cpp (in-process or server), or transformers with its quantizer."""
    if row["framework"] in ENGINES:
        return ENGINES[row["framework"]]
    prefix = str(row["quantization"]).split("-", 1)[0]
    return f"transformers + {QUANTIZERS[prefix]}" if prefix in QUANTIZERS else "transformers"


def new_configurations(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Rows of `new` whose (configuration id, card model) is not in `old`."""
    seen = set(zip(old["configuration_id"], old["gpu_name"], strict=True))
    mask = [(c, g) not in seen for c, g in zip(new["configuration_id"], new["gpu_name"], strict=True)]
    return new[mask].assign(engine=lambda f: f.apply(engine, axis=1))


def coverage(added: pd.DataFrame) -> pd.DataFrame:
    """Per engine: configurations, formats, model shapes and architecture families, how many formats reach four
    of either, and the batch sizes, workloads and cards."""
    rows = []
    for name, g in added.groupby("engine"):
        per_format = g.groupby("quantization")["architecture"].nunique()
        per_model = g.groupby("quantization")["model"].nunique()
        rows.append({"engine": name, "configurations": len(g), "formats": g["quantization"].nunique(),
                     "model shapes": g["model"].nunique(), "architecture families": g["architecture"].nunique(),
                     "formats on >= 4 shapes": int((per_model >= 4).sum()),
                     "formats on >= 4 families": int((per_format >= 4).sum()),
                     "batch sizes": " ".join(str(b) for b in sorted(g["batch_size"].unique())),
                     "workloads": " ".join(sorted(g["workload"].unique())),
                     "cards": ", ".join(sorted(g["gpu_name"].unique()))})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--version", default="v0.2.0")
    parser.add_argument("--md", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    folders = sorted(p for p in ROOT.iterdir() if p.is_dir())
    first, _ = release_from_folders([f for f in folders if V0_1_0_DATE in f.name], args.out / "v0.1.0-rebuilt",
                                    version="v0.1.0", quality=True)
    release, _ = release_from_folders(folders, args.out, version=args.version, quality=True, previous=first)
    old = pd.read_parquet(first / "data" / "configurations.parquet")
    new = pd.read_parquet(release / "data" / "configurations.parquet")
    added = new_configurations(old[old["gpu_count"] > 0], new[new["gpu_count"] > 0])
    header = (f"`benchmarks/engines_coverage.py`: v0.1.0 rebuilt from the {V0_1_0_DATE} sweep folders "
              f"({len(old)} configurations), {args.version} from every folder under {ROOT} ({len(new)}); "
              f"**{len(added)} new GPU configurations** on {added['model'].nunique()} model shapes "
              f"({', '.join(sorted(added['model'].unique()))}) of {added['architecture'].nunique()} architecture "
              f"families ({', '.join(sorted(added['architecture'].unique()))}).")
    lines = [f"# {args.version} over v0.1.0 on the GPU", "", header, "",
             markdown_table(coverage(added)), "",
             "## New configurations per format and model shape", "",
             markdown_table(pd.crosstab(added["quantization"], added["model"]).reset_index()), "",
             "## CHANGELOG.md of the release", "", (release / "CHANGELOG.md").read_text(encoding="utf-8")]
    text = "\n".join(lines).rstrip("\n") + "\n"
    print(text, end="")
    if args.md:
        args.md.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
