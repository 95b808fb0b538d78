"""The managed-server helper against real tiny HTTP servers: healthy, crashing, hanging."""

from __future__ import annotations

import os
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from wattcounts_pipeline.backends.server import ManagedServer
from wattcounts_pipeline.core.errors import BackendError

SERVER = textwrap.dedent("""
    import http.server, sys, time
    mode, port = sys.argv[1], int(sys.argv[2])
    print("tiny server starting in mode", mode, flush=True)
    if mode == "crash":
        sys.exit("boom: tiny server crashed on purpose")
    if mode == "hang":
        time.sleep(3600)
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
""")


@pytest.fixture()
def script(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_server.py"
    path.write_text(SERVER)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_healthy_server_answers_and_stops(script: Path, tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, str(script), "ok", "{port}"], tmp_path / "ok.log", startup_timeout_s=20)
    with server:
        pid = server.proc.pid if server.proc else -1
        with urllib.request.urlopen(server.base_url + "/health", timeout=5) as resp:
            assert resp.read() == b"ok"
    assert server.proc is None
    assert not _alive(pid)
    assert "mode ok" in (tmp_path / "ok.log").read_text()


def test_crashed_server_raises_with_log_tail(script: Path, tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, str(script), "crash", "{port}"], tmp_path / "crash.log",
                           startup_timeout_s=20)
    with pytest.raises(BackendError, match="exited with code 1") as err:
        server.start()
    assert "boom: tiny server crashed on purpose" in str(err.value)
    assert str(tmp_path / "crash.log") in str(err.value)


def test_hung_server_is_timed_out_and_killed(script: Path, tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, str(script), "hang", "{port}"], tmp_path / "hang.log",
                           startup_timeout_s=2, grace_s=1)
    pids: list[int] = []
    original = server._wait_healthy

    def remember_pid() -> None:
        pids.append(server.proc.pid if server.proc else -1)
        original()

    server._wait_healthy = remember_pid  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="did not answer 200") as err:
        server.start()
    assert "mode hang" in str(err.value)
    assert not _alive(pids[0])
