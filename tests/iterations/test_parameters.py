"""`IterateJob`: bad values fail before any work, and the early-stop and objective forms."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from tasks.iterations.parameters import (
    IterateJob,
    Objective,
    parse_early_stop,
    parse_objective,
)

HILL_CLIMB = "tasks.iterations.examples.hill_climb:HillClimb"


def job(**fields: Any) -> IterateJob:
    """An `IterateJob` for the example hill climb, with `fields` changed."""
    return IterateJob(**{"job": "job", "program": HILL_CLIMB, "iterations": 10, **fields})


def test_a_valid_job_keeps_its_values() -> None:
    """A job with every field in range is accepted as given."""
    request = job(iterations=100, checkpoint_every_iterations=5, early_stop="loss:3:min")
    assert (request.iterations, request.checkpoint_every_iterations, request.early_stop) == (100, 5, "loss:3:min")


@pytest.mark.parametrize("iterations", [0, -1])
def test_iterations_below_one_are_refused(iterations: int) -> None:
    """A job must run at least one iteration; the message names the field and the bound."""
    with pytest.raises(ValidationError, match=r"iterations\n  Input should be greater than 0"):
        job(iterations=iterations)


def test_a_job_without_any_checkpoint_interval_is_refused() -> None:
    """Neither interval means a kill loses the whole run, so the message asks for one of them."""
    with pytest.raises(ValidationError, match="give checkpoint_every_iterations or checkpoint_every_minutes"):
        job(checkpoint_every_iterations=None, checkpoint_every_minutes=None)


@pytest.mark.parametrize("field", ["checkpoint_every_iterations", "checkpoint_every_minutes"])
@pytest.mark.parametrize("value", [0, -5])
def test_a_checkpoint_interval_below_one_is_refused(field: str, value: int) -> None:
    """An interval of zero or less is refused, naming the field."""
    with pytest.raises(ValidationError, match=rf"{field}\n  Input should be greater than 0"):
        job(**{field: value})


def test_either_interval_alone_is_enough() -> None:
    """Checkpoints by iterations alone, or by minutes alone, are both accepted."""
    assert job(checkpoint_every_iterations=5, checkpoint_every_minutes=None).checkpoint_every_iterations == 5
    assert job(checkpoint_every_minutes=2.5).checkpoint_every_minutes == 2.5


@pytest.mark.parametrize("text", ["loss:min", "loss:5:avg", "loss:x:min", ":5:min", "loss:-1:max"])
def test_an_early_stop_of_another_form_is_refused(text: str) -> None:
    """Early stop is METRIC:PATIENCE:min|max; the message shows the form with an example."""
    with pytest.raises(ValidationError, match=rf"early stop '{text}' is not METRIC:PATIENCE:min\|max .*'val_loss:5:min'"):
        job(early_stop=text)


def test_an_early_stop_patience_of_zero_is_refused() -> None:
    """Patience counts reports without improvement, so it is at least 1."""
    with pytest.raises(ValidationError, match="with PATIENCE >= 1"):
        job(early_stop="loss:0:min")


@pytest.mark.parametrize("text", ["loss", "loss:up", "loss:3:min", ":max"])
def test_an_objective_of_another_form_is_refused(text: str) -> None:
    """The objective is METRIC:min|max; the message shows the form with an example."""
    with pytest.raises(ValidationError, match=rf"objective '{text}' is not METRIC:min\|max; .*'val_loss:min'"):
        job(objective=text)


@pytest.mark.parametrize("program", ["hill_climb", "a.b:", "a b:C", "1mod:Name", "a.b:C:D", "a..b:C"])
def test_a_program_reference_of_another_form_is_refused(program: str) -> None:
    """The program is package.module:Name; anything else fails as the form is filled in."""
    with pytest.raises(ValidationError, match=r"program\n  String should match pattern"):
        job(program=program)


def test_best_of_is_the_objective_when_given() -> None:
    """An explicit objective is tracked even when early stopping watches another metric."""
    assert job(objective="accuracy:max", early_stop="loss:3:min").best_of() == Objective("accuracy", "max")


def test_best_of_falls_back_to_the_early_stop_metric() -> None:
    """Without an objective, the best value tracked is the early-stop metric's."""
    assert job(early_stop="val_loss:4:min").best_of() == Objective("val_loss", "min")


def test_best_of_is_none_without_objective_or_early_stop() -> None:
    """Nothing to track: no best value."""
    assert job().best_of() is None


def test_stopping_parses_the_metric_goal_and_patience() -> None:
    """`val_loss:5:max` is the objective and a patience of 5."""
    assert parse_early_stop("val_loss:5:max") == (Objective("val_loss", "max"), 5)
    assert parse_objective("score:min") == Objective("score", "min")


@pytest.mark.parametrize(("goal", "value", "best", "better"), [
    ("min", 1.0, None, True), ("min", 1.0, 2.0, True), ("min", 2.0, 2.0, False), ("max", 3.0, 2.0, True),
    ("max", 1.0, 2.0, False), ("min", math.nan, None, False), ("max", math.nan, 1.0, False),
])
def test_better_compares_by_goal_and_never_takes_nan(goal: str, value: float, best: float | None, better: bool) -> None:
    """Any number beats no best, a tie does not improve, and NaN never improves."""
    objective = Objective("m", "min" if goal == "min" else "max")
    assert objective.better(value, best) is better
