"""`wattcounts sweep` and `wattcounts pack`: measure on a host reached without Dagster, pack what it wrote.

Imports stay inside the handlers so that registering the subcommands costs nothing: a lent GPU host runs
`python3 -m wattcounts_pipeline.cli sweep` with only the measuring dependencies installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="measure every spec of experiment files, resumably, into a sweep folder",
        description="The same measure_spec as the `measurements` asset, one spec after another; each finished "
                    "spec is appended to OUT/*.jsonl at once, so a killed sweep loses at most the spec in progress "
                    "and a rerun skips what is done. A failing spec goes to failures.jsonl and the sweep goes on. "
                    "--shards N runs one sweep per visible GPU from a shared claims file.")
    sweep.add_argument("experiments", nargs="+", type=Path, help="experiment YAML files")
    sweep.add_argument("--out", type=Path, required=True, help="results folder (resumed if it exists)")
    sweep.add_argument("--meter", default=None, help="nvml | rapl | estimate (default: best available)")
    sweep.add_argument("--max-seconds", type=float, default=None, help="start no new spec after this long")
    sweep.add_argument("--only", default="", help="measure only keys containing this text (comma-separated: any of them)")
    sweep.add_argument("--recorded", type=Path, action="append", default=[],
                       help="a sweep folder whose measured specs are skipped (repeatable)")
    sweep.add_argument("--hardware", default=None,
                       help="pin every spec to this card (e.g. h100): the card becomes part of each id")
    sweep.add_argument("--shards", type=int, default=1, help="parallel sweeps, one per visible GPU")
    sweep.add_argument("--claims", type=Path, default=None,
                       help="shared queue file: sweeps given the same one never measure a spec twice")
    sweep.add_argument("--cold-idle-s", type=float, default=0.0,
                       help="first measure the idle floor this long, before any model (or CUDA context) loads")
    sweep.add_argument("--log-prefix", default="", help=argparse.SUPPRESS)
    sweep.add_argument("--json", action="store_true", help="print only one JSON document (the counts) on stdout")
    sweep.set_defaults(func=_sweep)

    pack = subparsers.add_parser(
        "pack", help="pack finished sweep folders into parquet",
        description="Each folder's JSONL tables become zstd parquet files, read back and compared value for value "
                    "before the JSONL is removed (lossless).")
    pack.add_argument("folders", nargs="+", type=Path, help="finished sweep folders (no sweep writing to them)")
    pack.add_argument("--level", type=int, default=19, help="zstd compression level")
    pack.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    pack.set_defaults(func=_pack)


def _sweep(args: argparse.Namespace) -> int:
    from wattcounts_pipeline.measure.sweep import sweep_command

    return sweep_command(args)


def _pack(args: argparse.Namespace) -> int:
    from wattcounts_pipeline.measure.sweep import pack_command

    return pack_command(args)

