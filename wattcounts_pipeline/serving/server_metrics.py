"""The server's own view of a load point: queue length, requests running, batch occupancy and KV-cache use,
polled from its Prometheus `/metrics` during the window (llama-server with `--metrics`, vLLM always).

Servers without `/metrics` (llama-cpp-python's server) leave these columns empty; a poll that fails mid-point
keeps what was polled before.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# gauge -> the names servers give it, first found wins
GAUGES = {
    "running": ("llamacpp:requests_processing", "vllm:num_requests_running"),
    "queue": ("llamacpp:requests_deferred", "vllm:num_requests_waiting"),
    "busy_slots": ("llamacpp:n_busy_slots_per_decode",),
    "kv_cache": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "llamacpp:kv_cache_usage_ratio"),
}
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)')  # name{labels} value
EMPTY = {"server_metrics_source": None, "server_running_mean": None, "server_queue_mean": None,
         "server_queue_max": None, "server_batch_occupancy": None, "server_kv_cache_usage_mean": None}


def parse_prometheus(text: str) -> dict[str, float]:
    """Sample values by metric name, summed over label sets (vLLM labels each gauge by model); NaN samples
    (llama-server before its first decode) are left out."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line.strip())
        if match is None:  # comments, blank lines
            continue
        try:
            value = float(match.group(2))
        except ValueError:
            continue
        if math.isfinite(value):
            out[match.group(1)] = out.get(match.group(1), 0.0) + value
    return out


def gauges(sample: dict[str, float]) -> dict[str, float]:
    """The known gauges found in one parsed sample."""
    found = {}
    for gauge, names in GAUGES.items():
        for name in names:
            if name in sample:
                found[gauge] = sample[name]
                break
    return found


@dataclass
class MetricsPoller:
    """Polls `url` every `interval_s` on a daemon thread between `start()` and `stop()`."""

    url: str
    interval_s: float = 0.5
    timeout_s: float = 2.0
    samples: list[dict[str, float]] = field(default_factory=list)
    unsupported: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll_once(self) -> bool:
        """One poll; False when the server has no usable /metrics (then polling stops)."""
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:
                text = resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            self.unsupported = f"{self.url} answered {exc.code}"
            return False
        except OSError as exc:  # the server is busy or gone: the load point itself will say which
            logger.debug("metrics poll of %s failed: %s", self.url, exc)
            return True
        found = gauges(parse_prometheus(text))
        if not found and not self.samples:
            self.unsupported = f"{self.url} has none of the known gauges"
            return False
        self.samples.append(found)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.poll_once():
                logger.info("no server metrics: %s", self.unsupported)
                return
            self._stop.wait(self.interval_s)

    def start(self) -> MetricsPoller:
        self._stop.clear()
        self.samples = []
        self._thread = threading.Thread(target=self._run, name="wc-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)


def summarize(samples: list[dict[str, float]], slots: int, source: str) -> dict[str, Any]:
    """Row columns from the polled samples: means over the window, the queue's maximum, batch occupancy as
    busy slots per decode (else requests running) over the slots."""
    if not samples:
        return dict(EMPTY)

    def mean(gauge: str) -> float | None:
        values = [s[gauge] for s in samples if gauge in s]
        return sum(values) / len(values) if values else None

    queue = [s["queue"] for s in samples if "queue" in s]
    busy = mean("busy_slots")
    running = mean("running")
    occupancy = (busy if busy is not None else running)
    return {"server_metrics_source": source, "server_running_mean": running, "server_queue_mean": mean("queue"),
            "server_queue_max": max(queue) if queue else None,
            "server_batch_occupancy": None if occupancy is None else occupancy / slots,
            "server_kv_cache_usage_mean": mean("kv_cache")}
