"""`wattcounts` command line: each subcommand lives beside the library code it drives."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# modules exposing `register(subparsers) -> None`; each parser's `func(args) -> int` runs its subcommand.
# Registering imports nothing heavy (each handler imports what it runs), so a GPU host without Dagster can sweep.
SUBCOMMAND_MODULES = (
    "wattcounts_pipeline.register",  # register
    "wattcounts_pipeline.measure.cli",  # sweep, pack
    "wattcounts_pipeline.submissions.cli",  # submit
    "wattcounts_pipeline.model.cli",  # train, recommend
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wattcounts", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
