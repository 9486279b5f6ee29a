"""`CheckpointWriter`: one write in flight at most, and a write's error raised in the loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tasks.iterations.models import Snapshot
from tasks.iterations.writer import CheckpointWriter
from tests.iterations.support import make_snapshot

WAIT = 10.0  # seconds an Event may take to be set before the test fails; never reached when the writer is right


class GatedWrite:
    """A write function that logs each write and holds the first until the test releases it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.log: list[str] = []

    def __call__(self, snapshot: Snapshot) -> str:
        name = str(snapshot.loop.iterations_done)
        self.log.append(f"start {name}")
        if not self.log[:-1]:
            self.started.set()
            assert self.release.wait(WAIT), "the test never released the first write"
        self.log.append(f"end {name}")
        return name


@pytest.fixture
def gated() -> Iterator[GatedWrite]:
    """A gated write that is released when the test ends, so no writer thread is left blocked."""
    write = GatedWrite()
    yield write
    write.release.set()


def test_a_second_submit_waits_until_the_first_write_is_done(gated: GatedWrite) -> None:
    """While the first write is held, submitting another blocks; releasing it lets the second through."""
    writer = CheckpointWriter(gated)
    writer.submit(make_snapshot(5))
    assert gated.started.wait(WAIT)
    returned = threading.Event()

    def submit_second() -> None:
        writer.submit(make_snapshot(10))
        returned.set()

    second = threading.Thread(target=submit_second)
    second.start()
    assert not returned.wait(0.2), "the second submit returned while the first write was still in flight"
    assert gated.log == ["start 5"]
    gated.release.set()
    assert returned.wait(WAIT)
    second.join(WAIT)
    assert writer.written == ["5"]
    writer.close()
    assert gated.log == ["start 5", "end 5", "start 10", "end 10"]
    assert writer.written == ["5", "10"]


def test_submit_returns_while_the_write_goes_on(gated: GatedWrite) -> None:
    """The loop is not held up by a write in flight: submit returns before the write ends."""
    writer = CheckpointWriter(gated)
    writer.submit(make_snapshot(5))
    assert gated.started.wait(WAIT)
    assert writer.written == []
    gated.release.set()
    writer.close()
    assert writer.written == ["5"]


def test_wait_raises_the_error_of_a_failed_write() -> None:
    """A write that failed on the writer thread is raised by the next wait, once."""
    def write(snapshot: Snapshot) -> str:
        raise OSError(f"bucket refused checkpoint {snapshot.loop.iterations_done}")

    writer = CheckpointWriter(write)
    writer.submit(make_snapshot(5))
    with pytest.raises(OSError, match="bucket refused checkpoint 5"):
        writer.wait()
    writer.close()
    assert writer.written == []


def test_the_next_submit_raises_the_error_of_the_write_before() -> None:
    """A failed write stops the loop at its next checkpoint, and the snapshot after it is not written."""
    attempts: list[int] = []

    def write(snapshot: Snapshot) -> str:
        attempts.append(snapshot.loop.iterations_done)
        raise OSError("disk full")

    writer = CheckpointWriter(write)
    writer.submit(make_snapshot(5))
    with pytest.raises(OSError, match="disk full"):
        writer.submit(make_snapshot(10))
    writer.close()
    assert attempts == [5]


def test_close_raises_the_error_of_the_last_write() -> None:
    """The final checkpoint's error is not lost when the writer closes."""
    def write(snapshot: Snapshot) -> str:
        raise OSError("upload refused")

    writer = CheckpointWriter(write)
    writer.submit(make_snapshot(5))
    with pytest.raises(OSError, match="upload refused"):
        writer.close()


def test_a_synchronous_writer_writes_before_submit_returns() -> None:
    """Without a thread, the write is done and recorded when submit returns, and its error raised at once."""
    written: list[int] = []

    def write(snapshot: Snapshot) -> str:
        if snapshot.loop.iterations_done == 10:
            raise OSError("disk full")
        written.append(snapshot.loop.iterations_done)
        return str(snapshot.loop.iterations_done)

    writer = CheckpointWriter(write, asynchronous=False)
    writer.submit(make_snapshot(5))
    assert (written, writer.written) == ([5], ["5"])
    with pytest.raises(OSError, match="disk full"):
        writer.submit(make_snapshot(10))


def test_a_checkpoint_is_reported_once_it_is_durable_not_when_it_is_submitted(gated: GatedWrite) -> None:
    """`finished()` names nothing while the write is held, then the checkpoint once, after `wait`."""
    writer = CheckpointWriter(gated)
    writer.submit(make_snapshot(5))
    assert gated.started.wait(WAIT)
    assert writer.finished() == []
    gated.release.set()
    writer.wait()
    assert (writer.finished(), writer.finished()) == (["5"], [])
    writer.close()
