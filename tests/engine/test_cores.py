"""Work on every core: slicing, worker processes that die or raise, and a caller's unguarded script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from tasks.engine import cores
from tasks.engine.cores import map_on_cores, split_evenly, submit_on_cores
from tasks.errors import CoreWorkerError

ROOT = Path(__file__).resolve().parents[2]


def square_each(numbers: list[int]) -> list[int]:
    """A worker's job for these tests: square a slice."""
    return [number * number for number in numbers]


def fail_on_seven(numbers: list[int]) -> list[int]:
    """Raise in the worker that gets the 7."""
    if 7 in numbers:
        raise ValueError("seven is not allowed here")
    return numbers


def report_pid(numbers: list[int]) -> list[int]:
    """The worker's process id, once per item."""
    return [os.getpid()] * len(numbers)


def kill_self_on(victim: int, numbers: list[int]) -> list[int]:
    """Die as a kill -9 would, in the worker that holds `victim`."""
    if victim in numbers:
        os.kill(os.getpid(), signal.SIGKILL)
    return numbers


def megabyte_each(items: list[bytes]) -> list[bytes]:
    """A reply larger than a pipe's buffer: a megabyte an item."""
    return [bytes(1024 * 1024) for _ in items]


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes, whatever the machine has."""
    monkeypatch.setenv(cores.CORES_VARIABLE, "2")


@pytest.mark.parametrize("count", [1, 2, 3, 10, 33])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_slices_keep_every_item_in_order_and_none_is_empty(count: int, parts: int) -> None:
    """Slices are consecutive, cover every item once, and there are min(parts, items) of them."""
    items = list(range(count))
    slices = split_evenly(items, parts)
    assert [item for part in slices for item in part] == items
    assert len(slices) == min(parts, count) and all(slices)


def test_slices_balance_their_weight() -> None:
    """One heavy item gets a slice of its own; the light ones share the other."""
    assert split_evenly([1, 1, 1, 1, 1, 45], 2, weight=lambda item: item) == [[1, 1, 1, 1, 1], [45]]
    assert split_evenly([45, 1, 1, 1, 1, 1], 2, weight=lambda item: item) == [[45], [1, 1, 1, 1, 1]]


def test_results_come_back_in_the_items_order_from_two_processes(two_cores: None) -> None:
    """Each core's slice runs in its own process, not this one, and results keep the order."""
    assert map_on_cores(square_each, list(range(100))) == [number * number for number in range(100)]
    pids = set(map_on_cores(report_pid, list(range(10))))
    assert len(pids) == 2 and os.getpid() not in pids


def test_an_error_in_a_worker_is_raised_here_and_the_workers_stay_usable(two_cores: None) -> None:
    """The function's own exception reaches the caller; the next call gets correct answers."""
    with pytest.raises(ValueError, match="seven is not allowed here"):
        map_on_cores(fail_on_seven, list(range(10)))
    assert map_on_cores(square_each, [2, 3, 4]) == [4, 9, 16]


def test_calls_submitted_together_each_get_their_own_results(two_cores: None) -> None:
    """Workers take requests in order; each call's results are its own, whichever is asked for first."""
    first = submit_on_cores(square_each, list(range(50)))
    second = submit_on_cores(square_each, list(range(50, 90)))
    assert second.result() == [number * number for number in range(50, 90)]
    assert first.result() == [number * number for number in range(50)]


def test_a_call_nobody_asks_about_does_not_disturb_the_next(two_cores: None) -> None:
    """The replies of a forgotten call are read and dropped when a later call's are."""
    submit_on_cores(square_each, list(range(40)))
    assert map_on_cores(square_each, [5, 6, 7]) == [25, 36, 49]


@pytest.mark.timeout(60)
def test_a_large_request_sent_while_a_large_reply_waits_does_not_deadlock(two_cores: None) -> None:
    """A megabyte request sent before a megabyte reply is read: both pipes full, yet both calls end."""
    first = submit_on_cores(megabyte_each, [b"", b""])
    second = submit_on_cores(megabyte_each, [bytes(1024 * 1024), bytes(1024 * 1024)])
    assert [len(reply) for reply in first.result() + second.result()] == [1024 * 1024] * 4


def test_a_worker_killed_mid_call_is_named_and_replaced(two_cores: None) -> None:
    """kill -9 of a worker fails that call with its pid and exit status; the next call starts new workers."""
    before = set(map_on_cores(report_pid, [0, 1]))
    with pytest.raises(CoreWorkerError, match=r"worker process \d+ exited with -9 while it held part of a batch"):
        map_on_cores(partial(kill_self_on, 3), list(range(6)))
    after = set(map_on_cores(report_pid, [0, 1]))
    assert after and not after & before


def test_an_unguarded_caller_script_is_not_run_again_in_the_workers(tmp_path: Path) -> None:
    """A script with no `if __name__ == "__main__"` guard runs once; multiprocessing's spawn would rerun it."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from tasks.engine.cores import map_on_cores\n"
        "from tests.engine.test_cores import square_each\n"
        "print('top level ran')\n"
        "print(map_on_cores(square_each, list(range(40))))\n"
    )
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, cores.CORES_VARIABLE: "2", "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("top level ran") == 1
    assert completed.stdout.splitlines()[-1] == str([number * number for number in range(40)])
