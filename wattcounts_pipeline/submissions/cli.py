"""`wattcounts submit <folder>`: check a bundle folder as ingestion will, pack it, drop it in the inbox."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit", help="validate, pack and submit a community measurement bundle",
        description="Validate a bundle folder (manifest.yaml, runs, requests[, power_traces]) with the checks "
                    "ingestion runs, pack it as a .tar.gz and move it into the submissions inbox. "
                    "Prints the bundle id (short sha256 of the archive). Format: "
                    "wattcounts_pipeline/submissions/FORMAT.md")
    parser.add_argument("folder", type=Path, help="folder holding the bundle's files")
    parser.add_argument("--inbox", type=Path, default=None,
                        help="inbox folder (default: $WATTCOUNTS_HOME/submissions/inbox)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from wattcounts_pipeline.core.errors import SubmissionError
    from wattcounts_pipeline.submissions.pack import submit

    try:
        bid, path = submit(args.folder, args.inbox)
    except SubmissionError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{bid} {path}")
    return 0
