"""The pool soak's timed kill plan and its percentiles; the whole soak runs in tests/deployments/test_postgres_pool.py."""

from __future__ import annotations

from typing import Any, cast

from benchmarks.pool_soak import Pool, Submitted, every_kill_timed, percentile


class CountingPool:
    """Stands in for the pool's bookkeeping: which worker each kill took."""

    def __init__(self, workers: int) -> None:
        self.workers: list[tuple[Any, tuple[str, ...]]] = [(f"worker-{number}", ("any",)) for number in range(workers)]
        self.killed: list[Any] = []

    def kill(self, process: Any) -> None:
        self.killed.append(process)


def test_the_timed_plan_kills_a_worker_each_period_until_its_count() -> None:
    """Three kills, each of a worker of the pool, when no run ends first."""
    pool = CountingPool(4)
    every_kill_timed(0.01, 3, seed=1)(cast(Pool, pool), Submitted({}, lambda: False))
    assert len(pool.killed) == 3 and set(pool.killed) <= {worker for worker, _ in pool.workers}


def test_the_timed_plan_stops_killing_once_every_run_has_ended() -> None:
    """No kill lands after the last run ended."""
    pool = CountingPool(4)
    every_kill_timed(0.01, 5, seed=1)(cast(Pool, pool), Submitted({}, lambda: True))
    assert pool.killed == []


def test_percentiles_take_the_value_at_that_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.99) == 5.0
    assert percentile([], 0.5) == 0.0
