"""A drain or a Ctrl-C asks the loop for a checkpoint now, instead of killing it mid-step.

Under a worker, `colabflow worker`'s drain first sends SIGUSR1 to each of its flow-run processes
that catches it (deployments/bootstrap.py): the loop finishes its step, writes a checkpoint and
waits until it is durable, then sends SIGTERM to its `prefect flow-run execute` supervisor, which
reschedules the run and stops this process. SIGTERM itself must stay Prefect's: the supervisor's
reschedule is acknowledged only while Prefect's own handler is installed, and without the
acknowledgement the process is killed with SIGKILL (found in this project, Prefect 3.8).

From the command line there is no supervisor, so SIGTERM and SIGINT (Ctrl-C) set the flag as
well, and the run ends with its report. A second signal is delivered at once, for a person who
will not wait. Handlers can only be set from the main thread; elsewhere the loop runs without
them (logged). A program whose steps are long may call `stop_requested()` to learn that the
loop stops after the current step; the step must still finish, since its state is saved.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import psutil

DRAIN_SIGNAL = signal.SIGUSR1  # what deployments/bootstrap.py sends first at a drain
COMMAND_LINE_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SUPERVISOR_WAIT_SECONDS = 120.0


def run_supervisor() -> psutil.Process | None:
    """The `prefect flow-run execute` process this flow run runs under, if a worker started it."""
    try:
        for ancestor in psutil.Process().parents():
            command = ancestor.cmdline()
            if "flow-run" in command and "execute" in command:
                return ancestor
    except psutil.Error:
        return None
    return None


class StopRequests:
    """The signal that asked the loop to stop, if any."""

    def __init__(self, supervisor: psutil.Process | None) -> None:
        self.supervisor = supervisor
        self.received: signal.Signals | None = None
        self.installed = False
        self._previous: dict[signal.Signals, object] = {}

    @property
    def signals(self) -> tuple[signal.Signals, ...]:
        return (DRAIN_SIGNAL,) if self.supervisor is not None else (DRAIN_SIGNAL, *COMMAND_LINE_SIGNALS)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum != DRAIN_SIGNAL:
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for stop_signal in self.signals:
            self._previous[stop_signal] = signal.signal(stop_signal, self._handle)
        self.installed = True

    def restore(self) -> None:
        for stop_signal, handler in self._previous.items():
            signal.signal(stop_signal, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def hand_over(self) -> None:
        """After the drain's checkpoint: ask the supervisor to reschedule the run, and wait to be stopped.

        The supervisor's SIGTERM reaches Prefect's handler, which ends this process's flow run as
        rescheduled (AwaitingRetry) rather than crashed.
        """
        self.restore()
        if self.supervisor is None:
            return
        try:
            self.supervisor.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            return
        threading.Event().wait(SUPERVISOR_WAIT_SECONDS)


_active: list[StopRequests] = []


def stop_requested() -> bool:
    """Whether a drain or Ctrl-C asked the running loop to stop after its current step."""
    return any(requests.received is not None for requests in _active)


@contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """The drain signal (and, from the command line, SIGTERM and SIGINT) set a flag while the block runs."""
    requests = StopRequests(run_supervisor())
    requests.install()
    _active.append(requests)
    try:
        yield requests
    finally:
        _active.remove(requests)
        requests.restore()
