"""CPU-bound work on every core, in worker processes, for items on local disk.

Threads share one interpreter lock. Per item of a local job, Python's own work (ids, paths,
records) takes about as long as the compression and file creation that release the lock, so
8 threads on 2 cores ran a batch of small files slower than one thread did (docs/benchmarks.md,
tree). Worker processes do not share the lock. Remote stores keep their threads: there the time
is spent waiting on the network.

The workers are plain `python -m tasks.engine.core_worker` children, one per core, started on
first use and kept for the life of the process. `multiprocessing`'s spawn would import the
caller's main script again in every worker, which runs the script's top level a second time
unless it is guarded by `if __name__ == "__main__"`; fork would copy Prefect's threads' locks.
A worker reads its own work from a pipe and exits when the pipe closes, so it dies with the
process that owns it. A worker that dies is replaced on the next call; the call that saw it fails.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from tasks.engine.core_worker import import_modules
from tasks.errors import CoreWorkerError

T = TypeVar("T")
R = TypeVar("R")

CORES_VARIABLE = "COLABFLOW_CORES"
MIN_ITEMS_PER_CORE = 16
# A file's fixed cost (open, create, hash, record) is about what compressing 128 KiB costs.
FILE_COST_BYTES = 128 * 1024


class HasSize(Protocol):
    @property
    def size(self) -> int: ...


def core_count() -> int:
    """Cores this process may use, or `COLABFLOW_CORES` when set (1 keeps all work in this process)."""
    configured = os.environ.get(CORES_VARIABLE)
    if configured:
        return max(1, int(configured))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worth_spreading(item_count: int) -> bool:
    """Whether `item_count` items are enough to pay for handing them to worker processes."""
    return core_count() > 1 and item_count >= MIN_ITEMS_PER_CORE * core_count()


def split_evenly(items: Sequence[T], parts: int, weight: Callable[[T], int] = lambda item: 1) -> list[list[T]]:
    """`items` cut into at most `parts` consecutive slices of about equal total `weight`, none empty."""
    count = max(1, min(parts, len(items)))
    total = sum(weight(item) for item in items)
    slices: list[list[T]] = [[] for _ in range(count)]
    running = 0
    for position, item in enumerate(items):
        index = min(count - 1, running * count // max(total, 1), position)
        index = max(index, count - (len(items) - position))
        slices[index].append(item)
        running += weight(item)
    return slices


def file_weight(item: HasSize) -> int:
    """The weight of a file item for `map_on_cores`: its bytes plus its fixed cost."""
    return item.size + FILE_COST_BYTES


class _Reply:
    """A reply a worker owes: empty until it is read, in the order the requests were sent."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: tuple[bool, Any] | None = None


class _Worker:
    """One child process that runs `function(argument)` pairs read from its stdin, in order."""

    def __init__(self) -> None:
        paths = [path or os.getcwd() for path in sys.path]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tasks.engine.core_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
        self.owed: deque[_Reply] = deque()

    def send(self, function: Callable[[Any], Any], argument: Any) -> _Reply:
        assert self.process.stdin is not None
        try:
            pickle.dump((function, argument), self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None
        reply = _Reply()
        self.owed.append(reply)
        return reply

    def receive(self, reply: _Reply) -> tuple[bool, Any]:
        """Whether the request of `reply` returned, and its result or exception; earlier replies are read first."""
        assert self.process.stdout is not None
        while reply.value is None:
            try:
                value = pickle.load(self.process.stdout)
            except EOFError:
                raise self._died() from None
            self.owed.popleft().value = value
        return reply.value

    def _died(self) -> CoreWorkerError:
        return CoreWorkerError(
            f"worker process {self.process.pid} exited with {self.process.wait()} while it held part of a batch "
            "(killed, or out of memory); what it finished is kept, and a rerun does the rest"
        )

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_workers: list[_Worker] = []
_workers_lock = threading.Lock()


class CoreCall(Generic[R]):
    """A function running over items on the cores (`submit_on_cores`); `result` waits for it.

    A call whose result nobody asks for costs only its work: its replies are read, and dropped,
    when a later call's are.
    """

    def __init__(self, parts: list[tuple[_Worker, _Reply]]) -> None:
        self._parts = parts

    def result(self) -> list[R]:
        """The results in the items' order; the function's own exception, or CoreWorkerError, is raised here."""
        with _workers_lock:
            try:
                replies = [worker.receive(reply) for worker, reply in self._parts]
            except CoreWorkerError:
                _close_workers()
                raise
        for succeeded, value in replies:
            if not succeeded:
                raise value
        return [result for _, part in replies for result in part]


def submit_on_cores(
    function: Callable[[list[T]], list[R]], items: Sequence[T], weight: Callable[[T], int] = lambda item: 1
) -> CoreCall[R]:
    """Start `function` over `items`, one slice per core in worker processes, and return at once.

    Each slice holds about the same total `weight` (bytes, say), so the cores finish together.
    A worker takes its requests in order, so a call submitted while another runs starts as soon
    as that one ends, and the caller can do its own work meanwhile.

    `function` must be importable by name from a module that does not import Prefect (a worker
    imports it), and take and return picklable values.
    """
    with _workers_lock:
        slices = split_evenly(items, core_count(), weight)
        while len(_workers) < len(slices):
            _workers.append(_Worker())
        try:
            return CoreCall([(worker, worker.send(function, part)) for worker, part in zip(_workers, slices)])
        except CoreWorkerError:
            _close_workers()
            raise


def map_on_cores(
    function: Callable[[list[T]], list[R]], items: Sequence[T], weight: Callable[[T], int] = lambda item: 1
) -> list[R]:
    """`function` over `items` on the cores (`submit_on_cores`), waited for; results in the items' order."""
    return submit_on_cores(function, items, weight).result()


def worker_pids() -> list[int]:
    """The process ids of the worker processes now running, as a chaos test needs them to kill one."""
    with _workers_lock:
        return [worker.process.pid for worker in _workers]


def start_on_cores(modules: list[str]) -> None:
    """Start the workers now and have them import `modules`, without waiting for either.

    A caller about to spend seconds of its own (importing Prefect, say) calls this first, so the
    workers are ready when the work arrives. A failed import shows when the work arrives.
    """
    if core_count() < 2:
        return
    with _workers_lock:
        while len(_workers) < core_count():
            worker = _Worker()
            _workers.append(worker)
            try:
                worker.send(import_modules, modules)
            except CoreWorkerError:
                continue


@atexit.register
def _close_workers() -> None:
    while _workers:
        _workers.pop().close()
