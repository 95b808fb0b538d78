"""`wattcounts` command line: each subcommand lives beside the library code it drives.

Conventions every subcommand keeps: `--json` prints one JSON document on stdout (progress and logs go to stderr);
exit status 0 when done, 1 when it failed, 2 for bad input (argparse's own errors, which name the flag, included).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# modules exposing `register(subparsers) -> None`; each parser's `func(args) -> int` runs its subcommand.
# Registering imports nothing heavy (each handler imports what it runs), so a GPU host without Dagster can sweep.
SUBCOMMAND_MODULES = (
    "wattcounts_pipeline.register",  # register
    "wattcounts_pipeline.contribute.cli",  # measure, bundle
    "wattcounts_pipeline.measure.cli",  # sweep, pack
    "wattcounts_pipeline.submissions.cli",  # submit
    "wattcounts_pipeline.model.cli",  # train, recommend
)


def main(argv: list[str] | None = None) -> int:
    from wattcounts_pipeline import __version__
    from wattcounts_pipeline.core.errors import ContractError, SpecError, WattCountsError

    parser = argparse.ArgumentParser(prog="wattcounts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wattcounts {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (SpecError, ContractError) as exc:  # the input (a file, a flag) is at fault
        print(f"wattcounts {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except WattCountsError as exc:
        print(f"wattcounts {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
