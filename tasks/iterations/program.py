"""The user's program: loaded under the allowlist, checked against the contract, built seeded.

A program is a class `package.module:Name` with `__init__(params, seed)`, `step(iteration)`
returning that iteration's metrics, `state_dict()` and `load_state_dict(state)`. It is checked
before any step runs, so a program that does not import or lacks a method costs nothing.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping
from typing import Protocol, cast

from tasks.engine.user_code import import_code, parse_code_path
from tasks.errors import InvalidProgramError
from tasks.iterations.python_random import program_code
from tasks.iterations.rng_states import seed_generators

REQUIRED_METHODS = ("step", "state_dict", "load_state_dict")
RESERVED_METRIC = "iteration"


class Program(Protocol):
    """What colabflow calls on a program (its results are checked, so they are typed loosely)."""

    def step(self, iteration: int) -> object: ...

    def state_dict(self) -> object: ...

    def load_state_dict(self, state: dict[str, object]) -> object: ...


def load_program_class(reference: str) -> type:
    """The class `reference` names, under the worker's allowlist, with every method of the contract."""
    found = import_code(parse_code_path(reference, "program"), "program")
    if not inspect.isclass(found):
        raise InvalidProgramError(
            f"program {reference!r} is a {type(found).__name__}, not a class; name a class with __init__(params, seed), "
            "step(iteration), state_dict() and load_state_dict(state)"
        )
    missing = [name for name in REQUIRED_METHODS if not callable(getattr(found, name, None))]
    if missing:
        raise InvalidProgramError(
            f"program {reference!r} has no {', '.join(missing)} method; an iterative program needs "
            "step(iteration) -> dict of metrics, state_dict() -> dict and load_state_dict(state)"
        )
    return found


def build_program(program_class: type, reference: str, params: Mapping[str, str], seed: int) -> Program:
    """A fresh instance, built after the global generators are seeded (so its set-up draws repeat)."""
    seed_generators(seed)
    try:
        with program_code():
            return cast(Program, program_class(dict(params), seed))
    except Exception as error:  # noqa: BLE001 - the program's own failure, reported as such and never retried
        raise InvalidProgramError(
            f"program {reference!r} could not be built with params {dict(params)!r} and seed {seed} "
            f"({type(error).__name__}: {error})"
        ) from None


def checked_metrics(reference: str, iteration: int, result: object) -> dict[str, float]:
    """`step`'s result as metric name -> float; anything else is refused naming what arrived."""
    if not isinstance(result, Mapping):
        raise InvalidProgramError(
            f"program {reference!r}: step({iteration}) returned a {type(result).__name__}; it must return a dict of "
            "metric name -> number, e.g. {'loss': 0.25}"
        )
    metrics: dict[str, float] = {}
    for name, value in result.items():
        if not isinstance(name, str) or name == RESERVED_METRIC:
            raise InvalidProgramError(
                f"program {reference!r}: step({iteration}) returned the metric name {name!r}; names are strings "
                f"other than {RESERVED_METRIC!r}"
            )
        metrics[name] = metric_value(reference, iteration, name, value)
    return metrics


def metric_value(reference: str, iteration: int, name: str, value: object) -> float:
    """A number (Python, numpy or a one-element tensor) as a float; bools and strings are refused."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (bool, str)):
        try:
            value = item()
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidProgramError(
            f"program {reference!r}: step({iteration}) returned {name}={value!r} ({type(value).__name__}); "
            "a metric must be a number"
        )
    return float(value)
