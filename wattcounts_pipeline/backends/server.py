"""A managed server subprocess: free port, health wait, log capture and a clean stop by process group.

Server-mode backends (llama.cpp server, vLLM's OpenAI server) are measured as a client talks to them.
A server that crashes or hangs must never hang the measure stage: every wait has a timeout, the whole
process group is killed by its id, and the error carries the server's log tail so the failed
partition shows why.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from wattcounts_pipeline.core.errors import BackendError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, max_lines: int = 40) -> str:
    """The last lines of a log file ('' when it does not exist)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-max_lines:])


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the group of `proc` (started with start_new_session), SIGKILL it after `grace_s`."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("pid %d ignored SIGTERM for %.0f s: killing its process group", proc.pid, grace_s)
    _signal_group(proc.pid, signal.SIGKILL)  # also reaps children the process left behind
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        logger.error("pid %d did not exit after SIGKILL", proc.pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session made the process's pid its group id
    except ProcessLookupError:
        pass


class ManagedServer:
    """One server subprocess. `argv` may contain `{host}` and `{port}`, filled in at start.

    Use as a context manager, or call `start()` and `stop()`. `fail(reason)` stops the server and
    returns a BackendError naming the URL, the log file and the log tail, for callers to raise.
    """

    def __init__(self, argv: Sequence[str], log_path: Path, health_path: str = "/health",
                 env: Mapping[str, str] | None = None, startup_timeout_s: float = 120.0,
                 grace_s: float = 10.0) -> None:
        self.argv_template = list(argv)
        self.log_path = Path(log_path)
        self.health_path = health_path
        self.env = dict(env) if env is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        """Start the server and block until its health URL answers 200, or raise BackendError."""
        self.port = free_port()
        argv = [a.format(host=HOST, port=self.port) for a in self.argv_template]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting server on %s: %s (log %s)", self.base_url, " ".join(argv), self.log_path)
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env={**os.environ, **self.env} if self.env else None,
                                             start_new_session=True)  # its own process group, killed as one
            except OSError as exc:
                raise BackendError(f"could not start server {argv[0]!r}: {exc}") from exc
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = self.base_url + self.health_path
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise self.fail(f"server exited with code {self.proc.returncode} before {url} answered")
            if self._get_status(self.health_path, timeout_s=2.0) == 200:
                logger.info("server healthy at %s", url)
                return
            time.sleep(0.25)
        raise self.fail(f"server did not answer 200 at {url} within {self.startup_timeout_s:.0f} s")

    def _get_status(self, path: str, timeout_s: float) -> int | None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def fail(self, reason: str) -> BackendError:
        """Stop the server and build the error to raise: reason, URL, log path and log tail."""
        self.stop()
        return BackendError(f"{reason} (server {self.base_url}, log {self.log_path})\n"
                            f"--- server log tail ---\n{tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the server's process group; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, self.grace_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
