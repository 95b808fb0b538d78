"""Cross-validated accuracy of the Watt Counts predictor on a configurations table.

    python benchmarks/predictor_cv.py PATH [--coverage 0.8] [--jobs -1] [--out cv.csv]

PATH is a configurations parquet, or a dataset release folder (every `*configurations*.parquet` under it is read).
Prints, per grouping (leave one architecture / hardware / framework / quantization out; the largest quarter of
the architectures held out at once) and target, the MAPE and interval coverage
of the model and of its two baselines (calibrated roofline, nearest measured neighbour). Groupings with fewer than
two groups are skipped and said so; rows the catalogs do not know are left out and counted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def read_configurations(path: Path) -> pd.DataFrame:
    """The table at `path`: one parquet file, or all configurations parquet files under a release folder."""
    if path.is_file():
        return pd.read_parquet(path)
    files = sorted(p for p in path.rglob("*.parquet") if "configurations" in p.as_posix())
    if not files:
        raise SystemExit(f"no *configurations*.parquet under {path}")
    print(f"reading {len(files)} file(s): {', '.join(str(f.relative_to(path)) for f in files)}")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))  # runnable from a checkout without installing the package
    from wattcounts_pipeline.model.crossval import cross_validate
    from wattcounts_pipeline.model.predictor import DEFAULT_COVERAGE, training_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--coverage", type=float, default=DEFAULT_COVERAGE, help="nominal interval coverage")
    parser.add_argument("--jobs", type=int, default=-1, help="parallel folds (-1: all cores)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (.csv or .json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    rows, feats, skipped = training_table(read_configurations(args.path))
    print(f"{len(rows)} configurations rows used, {len(skipped)} left out")
    for reason, count in pd.Series(list(skipped.values()), dtype=object).value_counts().items():
        print(f"  left out {count}: {reason}")
    if len(rows) < 2:
        print("too few rows to cross-validate")
        return 1
    for column in ("arch_key", "hardware_key", "framework"):
        print(f"  {column}: {feats[column].value_counts().to_dict()}")
    started = time.perf_counter()
    table, notes = cross_validate(rows, feats, args.coverage, n_jobs=args.jobs)
    print(f"cross-validation took {time.perf_counter() - started:.1f} s; intervals nominal {args.coverage:.0%}\n")
    for note in notes:
        print(f"note: {note}")
    if table.empty:
        print("no grouping had two or more groups: nothing to report")
        return 1
    wide = table.pivot_table(index=["grouping", "target", "n_rows", "n_groups"], columns="model",
                             values=["mape", "coverage"], sort=False)
    wide.columns = [f"{model} {metric}" for metric, model in wide.columns]
    order = [f"{m} {k}" for k in ("mape", "coverage") for m in ("model", "roofline", "nearest")]
    wide = wide[[c for c in order if c in wide.columns]]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(wide.to_string(float_format=lambda v: f"{v:.3g}"))
    print("\nmape: mean absolute percentage error (%); coverage: fraction of held-out values inside the interval")
    if args.out is not None:
        if args.out.suffix == ".json":
            table.to_json(args.out, orient="records", indent=2)
        else:
            table.to_csv(args.out, index=False)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
