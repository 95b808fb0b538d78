"""Crash- and race-safe ingestion, release staging cleanup, and Hub calls that cannot hang (issue 26, point 5).

Kills are real SIGKILLs of a forked child at named points of an ingestion (and at times into it); races are
threads and processes released together by a barrier. After every kill the store must be in exactly one
state for the bundle (accepted, rejected, or not yet seen with the archive still in the inbox), and the next
run must reach the right final state and leave no staging behind.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.helpers import hubdata
from wattcounts_pipeline.core import atomic
from wattcounts_pipeline.core.atomic import atomic_file
from wattcounts_pipeline.core.errors import ReleaseError
from wattcounts_pipeline.hub import build_release
from wattcounts_pipeline.hub import release as release_module
from wattcounts_pipeline.hub.publish import publish_hub
from wattcounts_pipeline.hub.release import write_checksums
from wattcounts_pipeline.submissions import store as store_module
from wattcounts_pipeline.submissions.archive import Limits
from wattcounts_pipeline.submissions.example import write_example_bundle
from wattcounts_pipeline.submissions.pack import pack_bundle
from wattcounts_pipeline.submissions.store import bundle_id, bundle_state, ingest_bundle

FORK = multiprocessing.get_context("fork")  # a forked child starts in milliseconds: CI can afford many kills


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid bundle, packed once; each test copies it into its own inbox."""
    work = tmp_path_factory.mktemp("bundle")
    return pack_bundle(write_example_bundle(work / "src", traces=True), work / "bundle.tar.gz")


def _inbox(tmp_path: Path, archive: Path, name: str = "b.tar.gz") -> Path:
    (tmp_path / "inbox").mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(archive, tmp_path / "inbox" / name))


def _staging(store: Path) -> list[Path]:
    return sorted(store.glob(f"*/{atomic.STAGING}*")) + sorted(store.glob(f"{atomic.STAGING}*"))


def assert_one_state(store: Path, bid: str, inbox_file: Path) -> str:
    """The bundle is accepted (whole, read-only), rejected (report and archive), or unseen (still in the inbox)."""
    state = bundle_state(store, bid)
    accepted, rejected = store / "accepted" / bid, store / "rejected" / bid
    if state == "accepted":
        assert {"runs.parquet", "requests.parquet", "manifest.yaml", "provenance.json", "original.tar.gz"} <= {
            p.name for p in accepted.iterdir()}
        assert pq.read_table(accepted / "runs.parquet").num_rows > 0
        for item in [accepted, *accepted.iterdir()]:
            assert not item.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), f"{item} is writable"
    elif state == "rejected":
        assert (rejected / "REPORT.md").is_file() and (rejected / "original.tar.gz").is_file()
        assert not accepted.exists()
    else:
        assert inbox_file.exists(), "the archive was lost: neither stored nor in the inbox"
    return state


def assert_settled(store: Path, bid: str, inbox_file: Path, state: str) -> None:
    """After a clean run: the final state, nothing left in the inbox, no staging, never both verdicts."""
    assert assert_one_state(store, bid, inbox_file) == state
    assert not inbox_file.exists()
    assert _staging(store) == []
    if state == "accepted":
        assert not (store / "rejected" / bid).exists()


# ---------------------------------------------------------------- races


def test_threads_racing_on_one_file_accept_it_once(archive: Path, tmp_path: Path) -> None:
    path, store = _inbox(tmp_path, archive), tmp_path / "store"
    barrier, results, errors = threading.Barrier(6), [], []

    def ingest() -> None:
        barrier.wait()
        try:
            results.append(ingest_bundle(path, store))
        except Exception as exc:  # noqa: BLE001 - the test reports any crash
            errors.append(exc)

    threads = [threading.Thread(target=ingest) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(results) == 6
    assert [r.status for r in results] == ["accepted"] * 6
    assert sorted(r.repeat for r in results) == [False] + [True] * 5
    assert_settled(store, bundle_id(archive), path, "accepted")


def _ingest_in_child(path: str, store: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    try:
        result = ingest_bundle(path, store)
        out.put((result.status, result.repeat))
    except Exception as exc:  # noqa: BLE001 - the test reports any crash
        out.put(("crash", repr(exc)))


def test_processes_racing_on_copies_of_one_bundle_accept_it_once(archive: Path, tmp_path: Path) -> None:
    """Two uploads of the same bytes under different names, ingested by four processes at once."""
    paths = [_inbox(tmp_path, archive, f"{n}.tar.gz") for n in ("a", "b")]
    store, barrier, out = tmp_path / "store", FORK.Barrier(4), FORK.Queue()
    children = [FORK.Process(target=_ingest_in_child, args=(str(paths[i % 2]), str(store), barrier, out))
                for i in range(4)]
    for child in children:
        child.start()
    outcomes = sorted(out.get(timeout=60) for _ in children)
    for child in children:
        child.join(10)
    assert outcomes == [("accepted", False)] + [("accepted", True)] * 3
    for path in paths:
        assert_settled(store, bundle_id(archive), path, "accepted")


# ---------------------------------------------------------------- kills


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _hooked(module: object, name: str, before: Callable[..., bool] = lambda *a: False,
            after: Callable[..., bool] = lambda *a: False) -> None:
    """Wrap `module.name` so the process is killed before or after a call for which the predicate holds."""
    real = getattr(module, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        if before(*args):
            _die()
        value = real(*args, **kwargs)
        if after(*args):
            _die()
        return value

    setattr(module, name, wrapper)


def _into(sub: str) -> Callable[..., bool]:
    """A rename whose destination is a bundle folder (not staging) under `sub`/."""
    return lambda src, dst, *a: Path(dst).parent.name == sub and not Path(dst).name.startswith(".")


def _nth(n: int) -> Callable[..., bool]:
    """True on the n-th call only."""
    calls = iter(range(1, 1 << 30))
    return lambda *a: next(calls) == n


KILLS: dict[str, Callable[[], None]] = {
    "writing the second table": lambda: _hooked(pq, "write_table", before=_nth(2)),
    "staging complete, before the rename": lambda: _hooked(os, "rename", before=_into("accepted")),
    "after the rename, before the inbox is emptied": lambda: _hooked(os, "rename", after=_into("accepted")),
    "while validating, holding the lock": lambda: _hooked(store_module, "inspect_archive", before=lambda *a: True),
    "after accepting, before an old report is removed": lambda: _hooked(atomic, "remove_tree",
                                                                      before=lambda p: Path(p).parent.name == "rejected"),
}


def _killed(target: Callable[[], None]) -> None:
    child = FORK.Process(target=target)
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL, f"the child was not killed (exit code {child.exitcode})"


@pytest.mark.parametrize("point", sorted(KILLS))
def test_accepting_ingestion_killed_at_a_point_recovers(point: str, archive: Path, tmp_path: Path) -> None:
    path, store, bid = _inbox(tmp_path, archive), tmp_path / "store", bundle_id(archive)
    if point.endswith("old report is removed"):  # rejected once under tighter limits, then submitted again
        assert ingest_bundle(path, store, Limits(max_compressed_bytes=10)).status == "rejected"
        path = _inbox(tmp_path, archive)

    def ingest() -> None:
        KILLS[point]()
        ingest_bundle(path, store)

    _killed(ingest)
    before = assert_one_state(store, bid, path)
    assert before == ("accepted" if point.startswith("after") else
                      "rejected" if point.endswith("old report is removed") else "unseen")
    result = ingest_bundle(path, store)  # the next run
    assert result.status == "accepted" and result.repeat == (before == "accepted"), result.reasons
    assert_settled(store, bid, path, "accepted")


@pytest.mark.parametrize("point", ["between the two renames", "after the rename, before the inbox is emptied"])
def test_rejecting_ingestion_killed_while_replacing_a_report_recovers(point: str, archive: Path,
                                                                       tmp_path: Path) -> None:
    path, store, bid, tight = _inbox(tmp_path, archive), tmp_path / "store", bundle_id(archive), Limits(
        max_compressed_bytes=10)
    assert ingest_bundle(path, store, tight).status == "rejected"
    path = _inbox(tmp_path, archive)
    nth = 1 if point.startswith("between") else 2  # replace_folder: old report aside, then the new one in

    def ingest() -> None:
        _hooked(os, "replace", after=_nth(nth))
        ingest_bundle(path, store, tight)

    _killed(ingest)
    assert assert_one_state(store, bid, path) == ("unseen" if nth == 1 else "rejected")
    assert ingest_bundle(path, store, tight).status == "rejected"
    assert_settled(store, bid, path, "rejected")


def test_ingestion_killed_at_times_into_it_recovers(archive: Path, tmp_path: Path) -> None:
    """Kills by timing, not by hook (0 to 180 ms into a ~150 ms ingestion): one state, the next run settles it."""
    states = []
    for step in range(10):
        work = tmp_path / str(step)
        path, store, bid = _inbox(work, archive), work / "store", bundle_id(archive)
        started = FORK.Event()

        def ingest(path: Path = path, store: Path = store, started: Any = started) -> None:
            started.set()
            ingest_bundle(path, store)

        child = FORK.Process(target=ingest)
        child.start()
        assert started.wait(30)
        time.sleep(0.02 * step)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        states.append(assert_one_state(store, bid, path))
        if path.exists():
            assert ingest_bundle(path, store).status == "accepted"
        assert_settled(store, bid, path, "accepted")
    assert "unseen" in states, f"no kill landed before the bundle was accepted: {states}"


def test_a_killed_lock_holder_does_not_block_the_next_run(archive: Path, tmp_path: Path) -> None:
    path, store = _inbox(tmp_path, archive), tmp_path / "store"
    lock = store / ".locks" / f"{bundle_id(archive)}.lock"
    ready = FORK.Event()

    def hold() -> None:
        with atomic.locked(lock):
            ready.set()
            time.sleep(60)

    child = FORK.Process(target=hold)
    child.start()
    assert ready.wait(30)
    with atomic.locked(lock, wait=False) as free:
        assert not free  # held by the child
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    started = time.monotonic()
    assert ingest_bundle(path, store).status == "accepted"
    assert time.monotonic() - started < 20


# ---------------------------------------------------------------- release builds


def test_release_build_killed_mid_way_leaves_staging_the_next_build_removes(tmp_path: Path) -> None:
    tables = hubdata.release_tables()

    def build() -> None:
        _hooked(release_module, "write_checksums", before=lambda *a: True)
        build_release(tables, "v0.1.0", tmp_path)

    _killed(build)
    assert not (tmp_path / "v0.1.0").exists()
    assert len(atomic.stale_staging(tmp_path)) == 1
    built = build_release(tables, "v0.1.0", tmp_path)
    assert atomic.stale_staging(tmp_path) == [] and (built / "checksums.sha256").is_file()


# ---------------------------------------------------------------- network timeouts


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_hub_endpoint_that_never_answers_fails_within_the_timeout(silent_endpoint: str, tmp_path: Path) -> None:
    release = tmp_path / "v0.1.0"
    release.mkdir()
    (release / "README.md").write_text("# release\n", encoding="utf-8")
    write_checksums(release)
    errors: list[Exception] = []

    def publish() -> None:
        try:
            publish_hub(release, "org/data", "v0.1.0", token="hf_secret_token", endpoint=silent_endpoint,
                        timeout_s=1.5)
        except Exception as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    worker = threading.Thread(target=publish, daemon=True)  # a hang fails this test instead of stalling CI
    started = time.monotonic()
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "publish_hub hung on an endpoint that never answers"
    assert time.monotonic() - started < 5
    assert len(errors) == 1 and isinstance(errors[0], ReleaseError)
    assert "creating the dataset repository (org/data): no answer within 1.5 s" in str(errors[0])
    assert "hf_secret_token" not in str(errors[0])


def test_atomic_file_replaces_only_when_the_block_ends_cleanly(tmp_path):
    target = tmp_path / "sub" / "table.parquet"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and not tmp.exists()
        tmp.write_text("first")
        assert not target.exists()  # nothing visible until the rename
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "first"  # the old file survives a failed write ...
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.parquet"]  # ... and no temporary is left
    with atomic_file(target) as tmp:
        tmp.write_text("second")
    assert target.read_text() == "second"
