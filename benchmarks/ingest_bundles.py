"""How fast does ingestion clear an inbox? 100 bundles of 10k rows each, target ≤ 60 s on 2 cores.

Each bundle: 10 specs × 100 repetitions = 1,000 run rows + 9,000 request rows (GPU rows, parquet, the
recommended format), every one validated, cross-checked and written to the store. Generation and packing
are not timed. `--profile` adds a cProfile of one bundle's ingestion.

    python benchmarks/ingest_bundles.py [--bundles 100] [--fmt parquet|csv] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

from wattcounts_pipeline.submissions.example import write_example_bundle
from wattcounts_pipeline.submissions.pack import pack_bundle
from wattcounts_pipeline.submissions.store import accepted_tables, ingest_bundle, list_inbox

SPECS, REPETITIONS, REQUESTS_PER_RUN = 10, 100, 9  # 1,000 runs + 9,000 requests = 10,000 rows


def make_inbox(root: Path, bundles: int, fmt: str) -> Path:
    inbox = root / "inbox"
    inbox.mkdir()
    for i in range(bundles):
        folder = write_example_bundle(root / "src" / f"b{i:03d}", n_specs=SPECS, repetitions=REPETITIONS,
                                      num_requests=REQUESTS_PER_RUN, fmt=fmt, seed=1000 * i)
        pack_bundle(folder, inbox / f"b{i:03d}.tar.gz")
        os.utime(inbox / f"b{i:03d}.tar.gz", (i, i))  # inbox order = creation order
    return inbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=100)
    parser.add_argument("--fmt", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        inbox = make_inbox(root, args.bundles, args.fmt)
        print(f"generated {args.bundles} bundles ({args.fmt}) in {time.perf_counter() - t0:.1f} s "
              f"(not timed below); {SPECS * REPETITIONS} runs + {SPECS * REPETITIONS * REQUESTS_PER_RUN} "
              "requests per bundle", flush=True)
        store = root / "store"
        bundles = list_inbox(inbox)
        per_bundle = []
        statuses: dict[str, int] = {}
        rows = 0
        t0 = time.perf_counter()
        for path in bundles:
            t = time.perf_counter()
            result = ingest_bundle(path, store)
            per_bundle.append(time.perf_counter() - t)
            statuses[result.status] = statuses.get(result.status, 0) + 1
            rows += sum(result.rows.values())
            if result.status != "accepted":
                print(f"unexpected rejection of {path.name}: {result.reasons[:3]}", flush=True)
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        tables = accepted_tables(store)
        concat_s = time.perf_counter() - t0
        per_bundle.sort()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}")
        print(f"ingested {len(bundles)} bundles, {rows} rows in {total:.1f} s "
              f"({rows / total:,.0f} rows/s); statuses {statuses}")
        print(f"per bundle: median {per_bundle[len(per_bundle) // 2]:.3f} s, max {per_bundle[-1]:.3f} s")
        print(f"accepted_tables: {len(tables['runs'])} runs + {len(tables['requests'])} requests in {concat_s:.2f} s")
        print(f"target ≤ 60 s: {'PASS' if total <= 60 else 'FAIL'}")
        if args.profile:
            path = root / "profiled.tar.gz"
            pack_bundle(write_example_bundle(root / "src" / "profiled", n_specs=SPECS, repetitions=REPETITIONS,
                                             num_requests=REQUESTS_PER_RUN, fmt=args.fmt, seed=-1 % 2**32),
                        path)
            profiler = cProfile.Profile()
            profiler.runcall(ingest_bundle, path, store)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())
    return 0 if total <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
