"""`python -m wattcounts_pipeline.register`: add the experiment specs as Dagster partitions.

Run by scripts/dev.sh before the UI starts, so "Materialize all" sees every partition at once; the
`experiment_sensor` does the same for experiment files added while the UI runs.
"""

from __future__ import annotations

import dagster as dg

from wattcounts_pipeline.defs.resources import ExperimentsResource, register_experiments


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        new = register_experiments(instance, ExperimentsResource())
    print(f"registered {len(new)} new experiment partition(s)" + "".join(f"\n  {k}" for k in new))


if __name__ == "__main__":
    main()
