"""`wattcounts` command line: each subcommand lives beside the library code it drives."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> module exposing `register(subparsers) -> None`; the parser's `func(args) -> int` runs it
SUBCOMMANDS = {
    "submit": "wattcounts_pipeline.submissions.cli",
    "recommend": "wattcounts_pipeline.model.cli",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wattcounts", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        importlib.import_module(module).register(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
