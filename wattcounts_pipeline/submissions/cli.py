"""`wattcounts submit <folder>`: check a bundle folder as ingestion will, pack it, and drop it in the inbox or open a
pull request with it on the dataset repository (`--to-hub`). Exit codes: 0 done, 1 failed (rejected, Hub error),
2 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit", help="validate, pack and submit a community measurement bundle",
        description="Validate a bundle folder (manifest.yaml, runs, requests[, power_traces]) with the checks "
                    "ingestion runs, pack it as a .tar.gz and move it into the submissions inbox, or, with "
                    "--to-hub REPO, open a pull request adding it to the dataset repository (token: HF_TOKEN; "
                    "endpoint: HF_ENDPOINT). Prints the bundle id (short sha256 of the archive). Format: "
                    "wattcounts_pipeline/submissions/FORMAT.md")
    parser.add_argument("folder", type=Path, help="folder holding the bundle's files")
    parser.add_argument("--inbox", type=Path, default=None,
                        help="inbox folder (default: $WATTCOUNTS_HOME/submissions/inbox)")
    parser.add_argument("--to-hub", metavar="REPO", default=None,
                        help="open a pull request on this Hub dataset repository (org/name) instead")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.set_defaults(func=_run)


def report(args: argparse.Namespace, code: int, doc: dict, text: str) -> int:
    """One JSON document on stdout with --json, else `text` (stdout when it worked, stderr when not); the
    contribute commands answer the same way."""
    if args.json:
        print(json.dumps({"ok": code == 0, "exit_code": code, **doc}, default=str))
    elif text:
        print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    from wattcounts_pipeline.core.errors import SubmissionError

    if not args.folder.is_dir():
        return report(args, 2, {"error": f"{args.folder}: no such bundle folder"},
                       f"wattcounts submit: error: {args.folder}: no such bundle folder")
    if args.to_hub is not None:
        if args.inbox is not None:
            return report(args, 2, {"error": "--to-hub and --inbox exclude each other"},
                           "wattcounts submit: error: --to-hub: give --to-hub or --inbox, not both")
        if args.to_hub.count("/") != 1:
            return report(args, 2, {"error": f"--to-hub {args.to_hub!r}: expected org/name"},
                           f"wattcounts submit: error: --to-hub: {args.to_hub!r} is not a dataset id (org/name)")
        from wattcounts_pipeline.submissions.hub import submit_to_hub

        try:
            pr = submit_to_hub(args.folder, args.to_hub)
        except SubmissionError as exc:
            return report(args, 1, {"error": str(exc)}, str(exc))
        return report(args, 0, {"bundle_id": pr.bundle_id, "repo_id": pr.repo_id, "path": pr.path_in_repo,
                                 "pr_url": pr.pr_url, "pr_num": pr.pr_num},
                       f"{pr.bundle_id} {pr.pr_url}")
    from wattcounts_pipeline.submissions.pack import submit

    try:
        bid, path = submit(args.folder, args.inbox)
    except SubmissionError as exc:
        return report(args, 1, {"error": str(exc)}, str(exc))
    return report(args, 0, {"bundle_id": bid, "path": str(path)}, f"{bid} {path}")

