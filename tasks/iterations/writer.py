"""Checkpoint writes on a background thread, at most one in flight, while the steps go on.

The loop hands over a `Snapshot` whose tensors are already copies (on the host), so the program
may change its state at once. A second checkpoint waits for the first to finish; an error of a
write (a full disk, a refused upload) is raised in the loop at the next checkpoint or at the end,
and until then the previous checkpoint stays in force.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from tasks.iterations.models import Snapshot


class CheckpointWriter:
    """Writes snapshots with `write`, in the background when `asynchronous`, else before returning."""

    def __init__(self, write: Callable[[Snapshot], str], asynchronous: bool = True) -> None:
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint") if asynchronous else None
        self._pending: Future[str] | None = None
        self.written: list[str] = []
        self._unreported: list[str] = []

    def submit(self, snapshot: Snapshot) -> None:
        """Start writing `snapshot` once the previous write is done."""
        self.wait()
        if self._executor is None:
            self._durable(self._write(snapshot))
        else:
            self._pending = self._executor.submit(self._write, snapshot)

    def wait(self) -> None:
        """Block until the write in flight is durable; raise its error, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._durable(pending.result())

    def finished(self) -> list[str]:
        """The checkpoints that became durable since the last call, without waiting; a failed write raises."""
        if self._pending is not None and self._pending.done():
            self.wait()
        names, self._unreported = self._unreported, []
        return names

    def _durable(self, name: str) -> None:
        self.written.append(name)
        self._unreported.append(name)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
