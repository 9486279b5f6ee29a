"""A drain or a Ctrl-C asks the loop for a checkpoint now, instead of killing it mid-step.

The worker's drain sends the flow run SIGTERM. While the loop runs, SIGTERM and SIGINT only set a
flag; the loop finishes its step, writes a checkpoint and stops. Then the signal is delivered to
the handler that was there before (Prefect's, under a worker: the run is rescheduled and picked
up elsewhere). A second signal before that is delivered at once, for a person who will not wait.
Handlers can only be set from the main thread; elsewhere the loop runs without them (logged).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """The signal that asked the loop to stop, if any."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.installed = False
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for stop_signal in STOP_SIGNALS:
            self._previous[stop_signal] = signal.signal(stop_signal, self._handle)
        self.installed = True

    def restore(self) -> None:
        for stop_signal, handler in self._previous.items():
            signal.signal(stop_signal, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def deliver(self) -> None:
        """Hand a received signal to the handler that was there before (after the checkpoint is safe)."""
        self.restore()
        if self.received is not None:
            signal.raise_signal(self.received)


@contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """SIGTERM and SIGINT set a flag while the block runs; the old handlers come back after it."""
    requests = StopRequests()
    requests.install()
    try:
        yield requests
    finally:
        requests.restore()
