"""One Hugging Face Hub call with a deadline and a token-free error: shared by publishing and by contributors' PRs.

huggingface_hub waits forever on a hung endpoint and its exceptions can quote request headers, so the call runs
in a daemon thread (abandoned past the deadline: not the process's to fix) and a failure becomes the caller's
own error type, raised outside `except` (no chained exception) with every occurrence of the token masked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def redacted_call(token: str, what: str, timeout_s: float, error: type[Exception],
                  fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` within `timeout_s`; on failure raise `error("Hub error while <what>: ...")` without the
    token. An `error` raised by `fn` itself passes through unchanged (the caller's own check failed)."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any client, HTTP or OS error of the Hub call
            outcome["error"] = exc

    worker = threading.Thread(target=call, name="hub-call", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise error(f"Hub error while {what}: no answer within {timeout_s:g} s (endpoint down or hung?)")
    exc = outcome.get("error")
    if exc is None:
        return outcome["value"]
    if isinstance(exc, error):
        raise exc
    message = f"{type(exc).__name__}: {exc}".replace(token, "***") if token else f"{type(exc).__name__}: {exc}"
    raise error(f"Hub error while {what}: {message}")
