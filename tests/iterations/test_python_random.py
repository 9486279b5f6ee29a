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


class GlobalRandomWalk:
    """A program that draws from Python's module-level `random`, as researchers' scripts do."""

    def __init__(self, params: dict[str, str], seed: int) -> None:
        self.position = random.random()

    def step(self, iteration: int) -> dict[str, float]:
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
    return IterateJob(job=job, program=f"{__name__}:GlobalRandomWalk", iterations=400, checkpoint_every_iterations=50,
                      seed=5)


def test_draws_of_another_thread_during_a_run_leave_the_programs_stream_alone(tmp_path: Path) -> None:
    """A thread that draws from `random` all through the run ends with the same state and metrics as a quiet run."""
    quiet = run_job(walk_job("quiet"), prepared_folder(tmp_path, "quiet"))
    done, drawn = threading.Event(), []

    def draw_until_done() -> None:
        while not done.is_set():
            drawn.append(random.random())

    noisy_thread = threading.Thread(target=draw_until_done)
    noisy_thread.start()
    try:
        noisy = run_job(walk_job("noisy"), prepared_folder(tmp_path, "noisy"))
    finally:
        done.set()
        noisy_thread.join()
    assert drawn, "the other thread never drew"
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
