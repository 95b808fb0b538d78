"""Time "Materialize all" the way a user does it: `dagster dev` as scripts/dev.sh starts it, then the backfill the
UI's *Materialize all* → *Launch backfill* button launches, until the release and the predictor exist.

Usage: `.venv/bin/python benchmarks/ui_materialize_all.py [--timeout 1500] [--out benchmarks/results/X.json]`
Everything runs in a fresh temporary DAGSTER_HOME (the repo's .dagster/dagster.yaml) and WATTCOUNTS_HOME, removed
afterwards.

A named release the way a maintainer cuts one (`--release-version v0.2.0 --previous-release DIR --keep-release OUT`):
the release folder it follows is put where the pipeline keeps its releases (a maintainer's `$WATTCOUNTS_HOME`
holds them already), the backfill carries the launchpad's config for `dataset_release` (`version`), and the new
release folder and the dataset repo's log are copied to OUT before the temporary home is removed.

The server's whole process group is stopped at the end, on success, failure, timeout, Ctrl-C or SIGTERM.

The mutation is the UI's own (ui-core LaunchAssetChoosePartitionsDialog.tsx, target `pureAll`, which the Lineage
page's "Materialize all" uses when assets have different partitions): `launchPartitionBackfill` with every asset
key, `allPartitions: true` and the tag `dagster/from_ui`. Per-stage times, runs and step workers come from the
instance's event log once the server has stopped; processes are also sampled from /proc while it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
LAUNCH = """mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}"""
BACKFILL = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}"""
RUNS = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { status } } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
SETTLE_S = 90  # a failed run ends the wait once no new run has come for this long (the daemon may still mark it)
ASSETS = "{ assetNodes { assetKey { path } } }"
LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def session_processes(sid: int) -> dict[tuple[int, str], str]:
    """Processes of session `sid` now: (pid, start time in ticks) -> command line."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            if int(fields[3]) != sid:  # field 6 of stat: session id
                continue
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            found[(int(entry.name), fields[19])] = cmd  # field 22: start time
        except (OSError, ValueError, IndexError):
            continue
    return found


class ProcessSampler(threading.Thread):
    """Every process the server's session ever held, sampled every `interval_s` (a shorter-lived one is missed)."""

    def __init__(self, sid: int, interval_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.sid, self.interval_s = sid, interval_s
        self.seen: dict[tuple[int, str], str] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.seen.update(session_processes(self.sid))
            self.stop_event.wait(self.interval_s)

    def kinds(self) -> dict[str, int]:
        def kind(cmd: str) -> str:
            for marker in ("execute_run", "execute_step", "grpc", "dagster-daemon", "dagster-webserver", "dagster dev"):
                if marker in cmd:
                    return marker
            return " ".join(Path(w).name for w in cmd.split()[:3])[:60]

        return dict(Counter(kind(c) for c in self.seen.values()).most_common())


def stop_group(proc: subprocess.Popen, grace_s: float = 30) -> str:
    """SIGINT the server's process group (dagster dev's own clean shutdown), SIGKILL whatever outlives `grace_s`."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGINT)
    except ProcessLookupError:
        return "already gone"
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not session_processes(pgid):
            return "stopped cleanly"
        time.sleep(0.5)
    left = session_processes(pgid)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    return f"killed after {grace_s:.0f} s ({len(left)} process(es) left)"


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "shared": "2-core machine shared with other workers' sessions: see the load averages"}


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], check=True, cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=True, cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def event_log_stats(dagster_home: Path, backfill_id: str, t_launch: float) -> dict[str, Any]:
    """Runs, step workers and per-asset times of the backfill, read from the stopped instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        statuses = Counter(r.status.value for r in runs)
        stages: dict[str, dict[str, Any]] = {}
        steps: dict[str, list[float]] = {}
        workers = 0
        failures: list[str] = []
        for run in runs:
            starts: dict[str, float] = {}
            for record in instance.all_logs(run.run_id):
                event = record.dagster_event
                if event is None:
                    continue
                kind = event.event_type_value
                if kind == "STEP_WORKER_STARTING":
                    workers += 1
                elif kind == "STEP_START":
                    starts[event.step_key] = record.timestamp
                elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
                    steps.setdefault(event.step_key, []).append(record.timestamp - starts[event.step_key])
                    if kind == "STEP_FAILURE" and event.step_failure_data.error is not None:
                        failures.append(f"{event.step_key}: {event.step_failure_data.error.to_string()[-1500:]}")
                elif kind == "ASSET_MATERIALIZATION":
                    name = "/".join(event.asset_key.path)
                    stage = stages.setdefault(name, {"materializations": 0, "first_s": None, "last_s": None})
                    stage["materializations"] += 1
                    at = round(record.timestamp - t_launch, 1)
                    stage["first_s"] = at if stage["first_s"] is None else min(stage["first_s"], at)
                    stage["last_s"] = at if stage["last_s"] is None else max(stage["last_s"], at)
                    metadata = event.materialization.metadata
                    if "duration_s" in metadata:  # measurements: each partition's share of its step
                        how = "recorded" if "recorded_in" in metadata else "live"
                        split = stage.setdefault("partition_s", {"live": 0.0, "recorded": 0.0, "n_live": 0})
                        split[how] += float(metadata["duration_s"].value)
                        split["n_live"] += how == "live"
        for name, stage in stages.items():
            if "partition_s" in stage:  # summed unrounded: a recorded partition takes milliseconds
                stage["partition_s"].update({k: round(stage["partition_s"][k], 2) for k in ("live", "recorded")})
            durations = steps.get(name, [])
            stage.update(steps=len(durations), step_s_total=round(sum(durations), 1),
                         step_s_max=round(max(durations), 1) if durations else None)
        records = [r for r in (instance.get_run_record_by_id(x.run_id) for x in runs)
                   if r is not None and r.start_time and r.end_time]
        run_s = [r.end_time - r.start_time for r in records]
        last_end = max((r.end_time for r in records), default=None)
    return {"runs": len(runs), "run_statuses": dict(statuses), "step_workers": workers, "step_failures": failures,
            "click_to_last_run_end_s": round(last_end - t_launch, 1) if last_end else None,
            "run_s_total": round(sum(run_s), 1), "stages": dict(sorted(stages.items(), key=lambda kv: kv[1]["first_s"]))}


def newest(folder: Path, skip: str = "") -> str | None:
    """The last name in `folder` other than `skip` (the release put there before the click)."""
    items = sorted(p.name for p in folder.iterdir() if p.name != skip) if folder.is_dir() else []
    return items[-1] if items else None


def keep_release(home: Path, tag: str, out: Path) -> None:
    """The release folder `tag` and the dataset repo's log (commit and tags per release) into `out`."""
    shutil.rmtree(out / tag, ignore_errors=True)
    shutil.copytree(home / "releases" / tag, out / tag)
    log = subprocess.run(["git", "-C", str(home / "dataset_repo"), "log", "--decorate", "--format=%h %d %s"],
                         check=True, capture_output=True, text=True)
    (out / "dataset_repo.log").write_text(log.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1500, help="hard limit in seconds for the whole run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ui_materialize_all.json")
    parser.add_argument("--release-version", default="", help="dataset_release's `version` (empty: the next patch)")
    parser.add_argument("--previous-release", type=Path, default=None, help="a release folder this one follows")
    parser.add_argument("--keep-release", type=Path, default=None, help="copy the new release folder here")
    args = parser.parse_args()
    # SIGTERM (and SIGINT, which a shell's background job ignores) end the run through the cleanup below
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.default_int_handler)
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    tmp = Path(tempfile.mkdtemp(prefix="wc-ui-bench-"))
    env = {**os.environ, "DAGSTER_HOME": str(tmp / "dagster_home"), "WATTCOUNTS_HOME": str(tmp / "home")}
    (tmp / "dagster_home").mkdir()
    shutil.copy(REPO / ".dagster" / "dagster.yaml", tmp / "dagster_home" / "dagster.yaml")
    seeded = args.previous_release.name if args.previous_release is not None else ""
    if args.previous_release is not None:
        shutil.copytree(args.previous_release, tmp / "home" / "releases" / args.previous_release.name)
    result: dict[str, Any] = {"benchmark": "benchmarks/ui_materialize_all.py", "commit": commit(),
                              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
                              "loadavg_1_5_15_at_start": list(os.getloadavg()),
                              "goal": "default 'Materialize all' from the UI <= 600 s; <= 0.5 s per recorded partition"}
    proc: subprocess.Popen | None = None
    sampler: ProcessSampler | None = None
    backfill_id = ""
    t_launch = time.time()
    log = (tmp / "dagster_dev.log").open("w")
    try:
        subprocess.run([BIN / "wattcounts", "register"], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=max(1, deadline - time.monotonic()))
        result["register_s"] = round(time.monotonic() - t0, 1)
        port = free_port()
        proc = subprocess.Popen([BIN / "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = ProcessSampler(proc.pid)
        sampler.start()
        assets: list[dict[str, Any]] = []
        while not assets:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("webserver never came up (see its log below)")
            try:
                entries = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
            except (OSError, RuntimeError):
                time.sleep(1)
                continue
            broken = [e["locationOrLoadError"]["message"] for e in entries
                      if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
            if broken:
                raise RuntimeError(f"code location failed to load: {broken[0][:2000]}")
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                assets = graphql(port, ASSETS)["assetNodes"]
            else:
                time.sleep(1)
        result["server_ready_s"] = round(time.monotonic() - t0, 1)
        t_launch = time.time()
        params: dict[str, Any] = {"assetSelection": [a["assetKey"] for a in assets], "allPartitions": True,
                                  "tags": [{"key": "dagster/from_ui", "value": "true"}]}
        if args.release_version:  # the launchpad's config, as the UI sends it with the backfill
            params["runConfigData"] = {"ops": {"dataset_release": {"config": {"version": args.release_version}}}}
            result["release_config"] = params["runConfigData"]
        launched = graphql(port, LAUNCH, {"backfillParams": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {launched}")
        backfill_id = launched["backfillId"]
        home = tmp / "home"
        status, seen_at = "", {}
        settled: tuple[int, float] | None = None  # (runs, since when) while every run has finished, one failed
        while time.monotonic() < deadline:
            backfill = graphql(port, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            status = backfill.get("status", backfill["__typename"])
            result["partitions"] = backfill.get("numPartitions")
            for what, folder in (("release", home / "releases"), ("predictor", home / "predictors")):
                if what not in seen_at and newest(folder, skip=seeded):
                    seen_at[what] = round(time.time() - t_launch, 1)
            runs = [r["status"] for r in graphql(port, RUNS, {"id": backfill_id})["runsOrError"]["results"]]
            if status in TERMINAL:
                break
            if runs and set(runs) <= FINISHED and "FAILURE" in runs:
                settled = settled if settled is not None and settled[0] == len(runs) else (len(runs), time.monotonic())
                if time.monotonic() - settled[1] > SETTLE_S:
                    break
            else:
                settled = None
            time.sleep(2)
        result.update(backfill_status=status, timed_out=time.monotonic() >= deadline,
                      release_at_s=seen_at.get("release"), predictor_at_s=seen_at.get("predictor"),
                      release=newest(home / "releases", skip=seeded), predictor=newest(home / "predictors"))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - recorded in the result, which is still written
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if backfill_id:
            result["click_to_end_s"] = round(time.time() - t_launch, 1)
        result["total_s"] = round(time.monotonic() - t0, 1)
        result["loadavg_1_5_15_at_end"] = list(os.getloadavg())
        if sampler is not None:
            sampler.stop_event.set()
            sampler.join()
            result["processes_sampled"] = {"total": len(sampler.seen), "by_kind": sampler.kinds()}
        if proc is not None:
            result["server_stop"] = stop_group(proc)
        log.close()
    if backfill_id:
        result.update(event_log_stats(tmp / "dagster_home", backfill_id, t_launch))
        done = result["stages"].get("measurements", {}).get("materializations", 0)
        result["measured_partitions"] = done
        recommended = result["stages"].get("recommendation", {}).get("last_s")
        result["click_to_recommendation_s"] = recommended
        if done:  # the goal's "from the click to the recommendation"; the backfill's end is reported beside it
            result["s_per_partition"] = round((recommended or result["click_to_last_run_end_s"]
                                               or result["click_to_end_s"]) / done, 3)
    if args.keep_release is not None and result.get("release"):
        keep_release(tmp / "home", result["release"], args.keep_release)
        result["kept_release"] = str(args.keep_release)
    if "error" in result or result.get("timed_out"):
        result["server_log_tail"] = (tmp / "dagster_dev.log").read_text(errors="replace")[-3000:]
    shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "server_log_tail"}, indent=2))
    return 0 if result.get("backfill_status") == "COMPLETED_SUCCESS" and not result.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
