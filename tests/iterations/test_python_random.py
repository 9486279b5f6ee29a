"""Python's global `random` is the program's alone while its code runs: other threads' draws change nothing."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from tasks.engine import user_code
from tasks.iterations.parameters import IterateJob
from tasks.iterations.python_random import (
    isolated_random,
    program_code,
    python_generator,
)
from tests.iterations.support import prepared_folder, run_job

ITERATIONS = 400
# Set for the noisy run alone: each step then waits for a draw another thread makes while it runs.
INTERLEAVED, OTHER_THREAD_DREW = threading.Event(), threading.Event()


class GlobalRandomWalk:
    """A program that draws from Python's module-level `random`, as researchers' scripts do."""

    def __init__(self, params: dict[str, str], seed: int) -> None:
        self.position = random.random()

    def step(self, iteration: int) -> dict[str, float]:
        if INTERLEAVED.is_set():
            OTHER_THREAD_DREW.clear()
            assert OTHER_THREAD_DREW.wait(60), f"the other thread drew nothing during step {iteration}"
        self.position += random.gauss(0.0, 1.0) + random.choice([-1, 1]) * random.random()
        return {"position": self.position}

    def state_dict(self) -> dict[str, object]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.position = float(state["position"])  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module's program loads as the command line would load it."""
    monkeypatch.setattr(user_code, "_caller_trusted", True)


def walk_job(job: str) -> IterateJob:
    return IterateJob(job=job, program=f"{__name__}:GlobalRandomWalk", iterations=ITERATIONS,
                      checkpoint_every_iterations=50, seed=5)


def test_draws_of_another_thread_during_a_run_leave_the_programs_stream_alone(tmp_path: Path) -> None:
    """A thread that draws from `random` during every step of the run ends it with the same state and metrics as
    a quiet run."""
    quiet = run_job(walk_job("quiet"), prepared_folder(tmp_path, "quiet"))
    done, drawn = threading.Event(), []

    def draw_until_done() -> None:
        while not done.is_set():
            drawn.append(random.random())
            OTHER_THREAD_DREW.set()

    noisy_thread = threading.Thread(target=draw_until_done)
    INTERLEAVED.set()
    noisy_thread.start()
    try:
        noisy = run_job(walk_job("noisy"), prepared_folder(tmp_path, "noisy"))
    finally:
        INTERLEAVED.clear()
        done.set()
        noisy_thread.join()
    assert len(drawn) >= ITERATIONS
    assert noisy.final_state_sha256 == quiet.final_state_sha256
    assert noisy.metrics == quiet.metrics


def test_only_program_code_on_the_runs_thread_draws_from_the_programs_generator() -> None:
    """Inside `program_code` the run's thread draws from the program's generator; outside it, and on other
    threads even inside it, from the shared one; after the run `random`'s functions are as they were."""
    functions = random.random, random.seed
    expected = random.Random(11)
    with isolated_random():
        python_generator().seed(11)
        with program_code():
            first = [random.random() for _ in range(3)]
        random.seed(99)
        shared = random.random()
        with program_code():
            worker = threading.Thread(target=lambda: random.random())
            worker.start()
            worker.join()
            fourth = random.random()
    assert first == [expected.random() for _ in range(3)] and fourth == expected.random()
    assert shared == random.Random(99).random()
    assert (random.random, random.seed) == functions
