"""The iterate loop through `run_iterations`: exact resume, cadence, early stop, drain and failed writes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

from tasks.engine import user_code
from tasks.errors import InvalidProgramError
from tasks.iterations.checkpoints import (
    checkpoint_name,
    checkpoint_names,
    read_checkpoint,
)
from tasks.iterations.examples.hill_climb import HillClimb
from tasks.iterations.loop import LoopPlan, advance, checkpoint_due, run_loop
from tasks.iterations.models import BestValue, LoopState, StopReason
from tasks.iterations.parameters import Objective
from tasks.iterations.resume import find_in_force
from tests.iterations.support import (
    IDENTITY,
    FailingStore,
    NoObserver,
    hill_climb_job,
    never_stop,
    pointer_iteration,
    prepared_folder,
    run_job,
    with_store,
)

HERE = __name__
STEPS: list[int] = []  # iterations stepped by the programs below, in order
LOSSES = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.0]


class CountingHillClimb(HillClimb):
    """The example hill climb, recording each iteration it steps."""

    def step(self, iteration: int) -> dict[str, float]:
        STEPS.append(iteration)
        return super().step(iteration)


class Plateau:
    """A loss that improves for three iterations, then stalls for three, then improves again."""

    def __init__(self, params: dict[str, str], seed: int) -> None:
        self.last = -1

    def step(self, iteration: int) -> dict[str, float]:
        STEPS.append(iteration)
        self.last = iteration
        return {"loss": LOSSES[iteration]}

    def state_dict(self) -> dict[str, Any]:
        return {"last": self.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last = state["last"]


class KeepsGenerator(Plateau):
    """A program that puts its numpy Generator itself in its state, which a checkpoint cannot hold."""

    def state_dict(self) -> dict[str, Any]:
        return {"last": self.last, "rng": numpy.random.default_rng(0)}


@pytest.fixture(autouse=True)
def steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The steps taken in this test, by programs of this module that a trusted caller may load."""
    monkeypatch.setattr(user_code, "_caller_trusted", True)
    STEPS.clear()
    yield STEPS
    STEPS.clear()


def plan(**fields: Any) -> LoopPlan:
    """A plan of 10 iterations with no checkpoint cadence, written synchronously, with `fields` changed."""
    return LoopPlan(**{"iterations": 10, "every_iterations": None, "every_seconds": None, "asynchronous": False,
                       **fields})


def test_a_run_to_n_then_to_2n_equals_a_straight_run_to_2n(tmp_path: Path) -> None:
    """Resuming ends in the same state with the same metrics file, byte for byte."""
    folder = prepared_folder(tmp_path / "resumed")
    run_job(hill_climb_job(20, checkpoint_every_iterations=7), folder)
    resumed = run_job(hill_climb_job(40, checkpoint_every_iterations=7), folder)
    straight = run_job(hill_climb_job(40, checkpoint_every_iterations=7), prepared_folder(tmp_path / "straight"))
    assert resumed.resumed_from == 20
    assert (resumed.final_state_sha256, resumed.metrics) == (straight.final_state_sha256, straight.metrics)
    assert (tmp_path / "resumed/job/metrics.jsonl").read_bytes() == (tmp_path / "straight/job/metrics.jsonl").read_bytes()


def test_checkpoints_fall_on_multiples_of_k_and_at_the_end(tmp_path: Path) -> None:
    """Every 5 iterations of 23: 5, 10, 15, 20 and the final 23; the newest 3 are kept."""
    folder = prepared_folder(tmp_path)
    run = run_job(hill_climb_job(23, checkpoint_every_iterations=5), folder)
    assert run.checkpoints_written == [checkpoint_name(done) for done in (5, 10, 15, 20, 23)]
    assert checkpoint_names(folder) == [checkpoint_name(done) for done in (23, 20, 15)]
    assert (run.stopped_reason, run.loop.iterations_done, len(run.metrics.splitlines())) == ("completed", 23, 23)


@pytest.mark.parametrize(("done", "due"), [(5, True), (10, True), (7, False)])
def test_checkpoint_due_every_k_iterations(done: int, due: bool) -> None:
    """Due at each multiple of K, counted from 0, whatever the time."""
    assert checkpoint_due(LoopState(iterations_done=done), plan(every_iterations=5), 0.0, 1) is due


@pytest.mark.parametrize(("seconds", "pending", "due"), [(60.0, 3, True), (59.9, 3, False), (600.0, 0, False)])
def test_checkpoint_due_by_time_needs_the_time_and_a_step_since(seconds: float, pending: int, due: bool) -> None:
    """Due once M minutes have passed, but only with iterations not yet checkpointed."""
    assert checkpoint_due(LoopState(iterations_done=7), plan(every_seconds=60.0), seconds, pending) is due


def test_the_loop_checkpoints_by_time_on_its_clock(tmp_path: Path) -> None:
    """With a clock that moves 1 s per step and a 3.5 s interval, checkpoints fall at 4, 8 and the end."""
    now = [0.0]

    class Ticking(Plateau):
        def step(self, iteration: int) -> dict[str, float]:
            now[0] += 1.0
            return {"loss": float(iteration)}

    _, reason, written = run_loop(Ticking({}, 0), "lab:Ticking", IDENTITY, prepared_folder(tmp_path),
                                  plan(every_seconds=3.5), LoopState(iterations_done=0), never_stop, NoObserver(),
                                  clock=lambda: now[0])
    assert (reason, written) == ("completed", [checkpoint_name(4), checkpoint_name(8), checkpoint_name(10)])


def test_advance_tracks_the_best_value_and_ignores_nan() -> None:
    """A better value replaces the best; NaN and a worse one keep it."""
    rule = plan(best_of=Objective("loss", "min"))
    loop = advance(LoopState(iterations_done=0), 0, {"loss": 2.0}, rule)
    loop = advance(advance(loop, 1, {"loss": math.nan}, rule), 2, {"loss": 3.0}, rule)
    assert loop.best == BestValue(metric="loss", value=2.0, iteration=0)
    assert loop.iterations_done == 3


def test_advance_counts_only_reports_of_the_early_stop_metric() -> None:
    """An iteration that does not report the metric neither resets nor advances the patience count."""
    rule = plan(stopping=(Objective("val", "min"), 2))
    loop = advance(LoopState(iterations_done=0), 0, {"val": 1.0}, rule)
    loop = advance(advance(loop, 1, {"val": 2.0}, rule), 2, {"train": 0.1}, rule)
    assert (loop.reports_without_improvement, loop.early_stopped) == (1, False)


def test_early_stop_stops_after_patience_reports_without_improvement(tmp_path: Path, steps: list[int]) -> None:
    """Loss stalls after iteration 2; with patience 3 the run stops after iteration 5, best at 2."""
    request = hill_climb_job(8, program=f"{HERE}:Plateau", params={}, early_stop="loss:3:min")
    run = run_job(request, prepared_folder(tmp_path))
    assert (run.stopped_reason, run.loop.iterations_done, steps) == ("early_stop", 6, [0, 1, 2, 3, 4, 5])
    assert run.loop.best == BestValue(metric="loss", value=3.0, iteration=2)


def test_an_early_stopped_job_does_no_steps_when_run_again(tmp_path: Path, steps: list[int]) -> None:
    """The early stop is part of the checkpoint, so a rerun stops at once, for the same reason."""
    request = hill_climb_job(8, program=f"{HERE}:Plateau", params={}, early_stop="loss:3:min")
    folder = prepared_folder(tmp_path)
    run_job(request, folder)
    steps.clear()
    again = run_job(request, folder)
    assert (steps, again.stopped_reason, again.checkpoints_written, again.resumed_from) == ([], "early_stop", [], 6)


def test_a_drain_stops_right_after_the_step_with_a_durable_checkpoint(tmp_path: Path, steps: list[int]) -> None:
    """A drain asked for during iteration 6 stops after it, with the checkpoint after 7 iterations in force."""
    def drain_after_iteration_6() -> StopReason | None:
        return "drain" if steps[-1] == 6 else None

    folder = prepared_folder(tmp_path)
    request = hill_climb_job(50, program=f"{HERE}:CountingHillClimb", checkpoint_every_iterations=100)
    run = run_job(request, folder, stop=drain_after_iteration_6)
    assert (run.stopped_reason, run.loop.iterations_done, steps) == ("drain", 7, list(range(7)))
    assert (run.checkpoints_written, pointer_iteration(folder)) == ([checkpoint_name(7)], 7)
    assert read_checkpoint(folder, checkpoint_name(7)).loop.iterations_done == 7


def test_a_state_that_a_checkpoint_cannot_hold_fails_naming_its_key(tmp_path: Path) -> None:
    """A numpy Generator in state_dict is refused at the first checkpoint, with its key and what to store."""
    folder = prepared_folder(tmp_path)
    request = hill_climb_job(8, program=f"{HERE}:KeepsGenerator", params={})
    with pytest.raises(InvalidProgramError, match=r"state value 'program\.rng' is a numpy\.random\._generator\."
                       r"Generator; .*store rng\.bit_generator\.state"):
        run_job(request, folder)
    assert pointer_iteration(folder) is None


def test_a_finished_job_run_again_does_no_steps_and_ends_in_the_same_state(tmp_path: Path, steps: list[int]) -> None:
    """Nothing is stepped or written again, and the reported final state is the same."""
    request = hill_climb_job(10, program=f"{HERE}:CountingHillClimb")
    folder = prepared_folder(tmp_path)
    first = run_job(request, folder)
    again = run_job(request, folder)
    assert steps == list(range(10))
    assert (again.resumed_from, again.checkpoints_written, again.stopped_reason) == (10, [], "completed")
    assert (again.final_state_sha256, again.metrics) == (first.final_state_sha256, first.metrics)


def test_a_failed_background_write_fails_the_run_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    """The second checkpoint's write fails on the writer thread: the run raises it, and checkpoint 5 stays in force."""
    folder = prepared_folder(tmp_path)
    failing = with_store(folder, FailingStore(tmp_path, lambda key: "/checkpoints/0000000010/" in key))
    with pytest.raises(OSError, match="no space left on device writing job/checkpoints/0000000010/"):
        run_job(hill_climb_job(20), failing)
    assert pointer_iteration(folder) == 5
    loaded, warnings = find_in_force(folder)
    assert (loaded.name if loaded else None, warnings) == (checkpoint_name(5), [])
