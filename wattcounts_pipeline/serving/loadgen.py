"""The load generator: closed loop (N users, each sending its next request when the last one ends) and open loop
(Poisson arrivals at a rate, whether or not earlier requests have finished).

Latency is counted from when a request was due: in open loop a request that waits for a free client connection
(`max_in_flight`) or in the server's queue has that wait in its TTFT and end-to-end time, as a user would. A
request that loses its connection or gets no byte within the client's timeout is *fatal*: the server died or
stalled, the point stops offering load, and the caller fails the point with the server's log.
Threads and the standard library only: the generator's own CPU time must stay small beside the server's, since
a CPU-time meter counts the whole machine.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wattcounts_pipeline.backends.base import RequestResult
from wattcounts_pipeline.core.errors import BackendError

logger = logging.getLogger(__name__)

# send(request index, t0) -> the request's result, its times relative to t0 (a time.perf_counter() value)
Send = Callable[[int, float], RequestResult]


@dataclass(frozen=True)
class Outcome:
    """One offered request: when it was due (s since the point began), and its result or error."""

    index: int
    due_s: float
    result: RequestResult | None = None
    error: str = ""
    fatal: bool = False  # connection lost or timed out: the server is gone or stalled
    sent: bool = True  # False: still waiting for a connection when the point was stopped

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def wait_s(self) -> float:
        """Time between being due and being sent (a free connection's wait)."""
        return max(0.0, self.result.start_s - self.due_s) if self.result else 0.0

    @property
    def ttft_s(self) -> float | None:
        return self.wait_s + self.result.ttft_s if self.result else None

    @property
    def e2e_s(self) -> float | None:
        return self.wait_s + self.result.e2e_s if self.result else None


def is_fatal(exc: BackendError) -> bool:
    """A lost connection or a timeout (the server died or stalled), as opposed to an answer with an error status."""
    return isinstance(exc.__cause__, (OSError, http.client.HTTPException))


def _attempt(send: Send, index: int, due_s: float, t0: float, stop: threading.Event) -> Outcome:
    if stop.is_set():
        return Outcome(index, due_s, error="not sent: the point was stopped after a fatal error", sent=False)
    try:
        return Outcome(index, due_s, result=send(index, t0))
    except BackendError as exc:
        fatal = is_fatal(exc)
        if fatal:
            stop.set()
        return Outcome(index, due_s, error=str(exc), fatal=fatal)


def closed_loop(send: Send, users: int, duration_s: float) -> list[Outcome]:
    """`users` threads send requests back to back until `duration_s` has passed; in-flight requests finish.
    Request indexes count up across users (request i is the i-th sent)."""
    t0 = time.perf_counter()
    stop = threading.Event()
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    counter = iter(range(1 << 62))

    def user() -> None:
        while not stop.is_set() and time.perf_counter() - t0 < duration_s:
            with lock:
                index = next(counter)
            outcome = _attempt(send, index, time.perf_counter() - t0, t0, stop)
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=user, name=f"wc-user-{u}", daemon=True) for u in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes, key=lambda o: o.index)


def poisson_arrivals(rate_per_s: float, duration_s: float, min_requests: int, seed: str) -> list[float]:
    """Arrival times (s) of a Poisson process at `rate_per_s` over `duration_s`, continued until at least
    `min_requests` arrived; the same list for the same seed on every machine."""
    rng = random.Random(seed)
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= duration_s and len(times) >= min_requests:
            return times
        times.append(t)


def open_loop(send: Send, arrivals: list[float], max_in_flight: int) -> list[Outcome]:
    """Each request sent at its arrival time on one of `max_in_flight` connections; after a fatal error no
    further request is sent."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="wc-arrival") as pool:
        t0 = time.perf_counter()
        futures = []
        for index, due_s in enumerate(arrivals):
            delay_s = t0 + due_s - time.perf_counter()
            if delay_s > 0 and stop.wait(delay_s):
                break
            if stop.is_set():
                break
            futures.append(pool.submit(_attempt, send, index, due_s, t0, stop))
        return [f.result() for f in futures]
