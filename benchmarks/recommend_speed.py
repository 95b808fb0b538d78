"""Wall time of `wattcounts recommend` as a user runs it (a fresh Python process each time); budget: 1 s.

    python benchmarks/recommend_speed.py [--model-dir DIR --release TAG] [--runs 5] [--hardware H100-SXM]

Without --model-dir it trains a throwaway predictor on the SYNTHETIC test fixtures (tests/helpers/model_fixtures.py)
in a temporary folder: the timing only needs a model of realistic size, not real numbers. Also reports the part
spent in `recommend()` itself and the cost of just importing the CLI, so a regression can be placed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET_S = 1.0


def _synthetic_release(folder: Path) -> tuple[Path, str]:
    sys.path.insert(0, str(REPO))
    from tests.helpers.model_fixtures import make_configurations
    from wattcounts_pipeline.model.registry import train

    print("training a throwaway predictor on synthetic test fixtures (not real data) ...")
    train(make_configurations(200, seed=0), "bench", folder)
    return folder, "bench"


def _time_command(command: list[str], runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):  # 1: a whole recommendation whose needs no candidate meets
            raise SystemExit(f"command failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--release", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hardware", default="H100-SXM")
    parser.add_argument("--scenario", default="chat")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, release = (args.model_dir, args.release) if args.model_dir else _synthetic_release(Path(tmp))
        cli = [sys.executable, "-m", "wattcounts_pipeline.cli", "recommend", "--hardware", args.hardware,
               "--scenario", args.scenario, "--model-dir", str(model_dir)] + (["--release", release] if release else [])
        _time_command(cli, 1)  # warm the file cache
        full = _time_command(cli, args.runs)
        startup = _time_command([sys.executable, "-m", "wattcounts_pipeline.cli", "--help"], args.runs)

        sys.path.insert(0, str(REPO))
        from wattcounts_pipeline.model.recommendation import recommend
        from wattcounts_pipeline.model.registry import load

        started = time.perf_counter()
        predictor = load(model_dir, release)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        rec = recommend(predictor, args.hardware, args.scenario)
        recommend_s = time.perf_counter() - started

    median = statistics.median(full)
    print(f"wattcounts recommend --hardware {args.hardware} --scenario {args.scenario}: {args.runs} runs, "
          f"median {median:.2f} s, max {max(full):.2f} s (budget {BUDGET_S:.1f} s)")
    print(f"  `wattcounts --help` (python + every subcommand registered): median {statistics.median(startup):.2f} s")
    print(f"  in process: load {load_s * 1000:.0f} ms, recommend {recommend_s * 1000:.0f} ms "
          f"({len(rec.candidates)} candidates, front of {len(rec.front)})")
    print(f"  machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    return 0 if median <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
