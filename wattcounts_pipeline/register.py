"""`wattcounts register`: add the experiment specs as Dagster partitions.

Run by scripts/dev.sh before the UI starts, so "Materialize all" sees every partition at once; the
`experiment_sensor` does the same for experiment files added while the UI runs. Dagster is imported in the
handler, so other subcommands start without it.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "register", help="add the experiment specs as partitions of the Dagster instance ($DAGSTER_HOME)",
        description="Register every spec of the experiment files ($WATTCOUNTS_EXPERIMENTS, ':'-separated; "
                    "default every experiments/*.yaml in the default set) as a dynamic partition, so the UI's "
                    "Materialize all sees them.")
    parser.add_argument("--json", action="store_true", help="print the new partitions as one JSON document")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import dagster as dg

    from wattcounts_pipeline.defs.resources import ExperimentsResource, register_experiments

    with dg.DagsterInstance.get() as instance:
        new = register_experiments(instance, ExperimentsResource())
    if args.json:
        print(json.dumps({"ok": True, "registered": list(new)}))
    else:
        print(f"registered {len(new)} new experiment partition(s)" + "".join(f"\n  {k}" for k in new))
    return 0
