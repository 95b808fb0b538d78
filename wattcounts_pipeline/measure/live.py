"""The progress display of `wattcounts measure`: phase, repetitions done, requests, and live power.

Live power is read by opening short windows (0.5 s) on the same meter that measures, in a thread: windows are
independent by key, so this reads what the measured window reads without touching it. It is shown, never
recorded. The display writes to stderr (stdout keeps the result table or the --json document); where stderr
is not a terminal, rich prints the final state only. Its own CPU use is a redraw twice a second.
"""

from __future__ import annotations

import itertools
import threading
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from wattcounts_pipeline.measure.run import Step
from wattcounts_pipeline.meters.base import EnergyMeter

POLL_S = 0.5
PHASES = {"load": "loading the model", "warmup": "warm-up (not measured)", "cooldown": "cooling down",
          "idle": "idle baseline", "window": "measuring", "prefill": "prefill-only window",
          "repetition_done": "measuring"}


class LiveDisplay:
    """Use as `with LiveDisplay(meter, repetitions) as show: measure_spec(..., progress=show)`."""

    def __init__(self, meter: EnergyMeter, repetitions: int, console: Console | None = None,
                 poll_s: float = POLL_S) -> None:
        self.meter, self.poll_s = meter, poll_s
        self.console = console or Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<24}"), BarColumn(bar_width=24),
                                 MofNCompleteColumn(), TextColumn("reps"), TextColumn("{task.fields[requests]}"),
                                 TextColumn("[bold]{task.fields[power]}"), TimeElapsedColumn(),
                                 console=self.console, refresh_per_second=2)
        self.task = self.progress.add_task("starting", total=repetitions, requests="", power="")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="wattcounts-live-power", daemon=True)
        self.power_error: str | None = None

    def __enter__(self) -> Self:
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * self.poll_s)
        self.progress.stop()

    def __call__(self, step: Step) -> None:
        """The progress hook handed to measure_spec."""
        label = PHASES.get(step.phase, step.phase)
        if step.repetition:
            label = f"{label} {step.repetition}/{step.repetitions}"
        requests = f"{step.requests} requests" if step.phase == "window" and step.requests else ""
        if step.phase == "repetition_done" and step.row is not None:
            requests = f"{step.row['energy_per_token_j']:.4g} J/token"
            self.progress.advance(self.task)
        self.progress.update(self.task, description=label, requests=requests)

    def _poll(self) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            key = f"live-power/{n}"
            try:
                self.meter.begin_window(key)
                stopped = self._stop.wait(self.poll_s)
                reading = self.meter.end_window(key)
            except Exception as exc:  # noqa: BLE001 - the display must never break a measurement
                self.power_error = str(exc)
                self.progress.update(self.task, power="power: n/a")
                return
            self.progress.update(self.task, power=f"{reading.mean_power_w:7.1f} W ({reading.method})")
            if stopped:
                return
