"""Peak memory of ingesting hostile bundles (issue 26: under 1 GiB for any of them).

Each bundle of tests/helpers/bad_bundles.py is built, then ingested in a fresh process whose peak resident set
(VmHWM, imports included) is read as it ends, so one case's garbage never hides another's peak.

    .venv/bin/python benchmarks/ingest_memory.py            # the bombs and the largest cases
    .venv/bin/python benchmarks/ingest_memory.py --all      # every case of the corpus
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORST = ["parquet_dictionary_bomb", "parquet_dictionary_bomb_short_strings", "parquet_too_many_rows",
         "csv_too_many_rows", "csv_header_too_long", "runs_cell_600kb", "affiliation_600kb", "software_600kb"]
CHILD = """
import json, sys, time
from wattcounts_pipeline.submissions.store import ingest_bundle
def peak_mib():  # VmHWM: this process's own high-water mark (ru_maxrss carries the parent's over fork+exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
start = time.monotonic()
from wattcounts_pipeline.submissions.archive import Limits
limits = Limits(**json.loads(sys.argv[3])) if len(sys.argv) > 3 else Limits()
result = ingest_bundle(sys.argv[1], sys.argv[2], limits)
print(json.dumps({"status": result.status, "reasons": len(result.reasons), "seconds": time.monotonic() - start,
                  "peak_rss_mib": peak_mib()}))
"""
BASELINE = ("import wattcounts_pipeline.submissions; "
            "print(int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--all", action="store_true",
                        help="every case: the generated corpus (tests/helpers/bad_bundles.py) and unit/test_submissions.py's")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.helpers.bad_bundles import CORPUS

    cases: dict[str, tuple[Callable[[Path], Path], dict]] = {name: (build, {}) for name, (build, _) in CORPUS.items()}
    if args.all:
        from tests.unit.test_submissions import CASES  # each with the limits its test ingests it under

        cases.update({f"submissions:{name}": (build, dataclasses.asdict(limits))
                      for name, (build, _, limits) in CASES.items()})

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = float(subprocess.run([sys.executable, "-c", BASELINE], env=env, capture_output=True, text=True,
                                check=True).stdout)
    print(f"baseline (interpreter + imports): {base:.0f} MiB")
    names = sorted(cases) if args.all else WORST
    worst = ("", 0.0)
    not_rejected: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            work = Path(tmp) / name.replace(":", "-")
            work.mkdir()
            build, limits = cases[name]
            archive = build(work)
            size = archive.stat().st_size
            out = subprocess.run([sys.executable, "-c", CHILD, str(archive), str(work / "store"),
                                  *([json.dumps(limits)] if limits else [])], env=env,
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:45s} {size / 1024:9.1f} KiB  {row['status']:8s} peak {row['peak_rss_mib']:7.1f} MiB "
                  f"({row['peak_rss_mib'] - base:+7.1f})  {row['seconds']:6.2f} s")
            if row["status"] != "rejected":
                not_rejected.append(name)
            if row["peak_rss_mib"] > worst[1]:
                worst = (name, row["peak_rss_mib"])
    print(f"{len(names) - len(not_rejected)} of {len(names)} rejected{': not ' + ', '.join(not_rejected) if not_rejected else ''}")
    print(f"worst: {worst[0]} at {worst[1]:.0f} MiB peak RSS (limit 1024 MiB)")
    return 0 if worst[1] < 1024 and not not_rejected else 1


if __name__ == "__main__":
    sys.exit(main())
