"""Python's global `random`, made the program's alone while its code runs.

Python's module-level `random` functions share one generator with every library in the process.
Under Prefect, other threads draw from it at moments no run can repeat (the events client's
websocket, found in this project: one draw in a background thread made a researcher's program
diverge from the uninterrupted run at iteration 14). So while a run is stepped, each public
function of `random` is routed: a call from the loop's thread while program code runs
(`program_code()`) goes to the program's own `random.Random`, which colabflow seeds, saves and
restores; every other call goes to the shared generator, as before. Code that bound a function
before the run (`from random import random`) keeps the shared one, and a program that keeps its
own `random.Random` keeps it in its state (docs/iterative-jobs.md).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

ROUTED = (
    "seed", "getstate", "setstate", "random", "getrandbits", "randbytes", "randrange", "randint", "choice",
    "choices", "shuffle", "sample", "uniform", "triangular", "gauss", "normalvariate", "lognormvariate",
    "expovariate", "vonmisesvariate", "gammavariate", "betavariate", "paretovariate", "weibullvariate",
    "binomialvariate",
)


class PythonGenerator(Protocol):
    """What colabflow does to the program's Python generator: seed it, save it, set it back."""

    def seed(self, a: int) -> None: ...

    def getstate(self) -> tuple[Any, ...]: ...

    def setstate(self, state: tuple[Any, ...]) -> None: ...


class _Routing:
    """The program's generator, the thread it runs on, and whether program code is running."""

    def __init__(self) -> None:
        self.generator = random.Random()
        self.owner = threading.get_ident()
        self.inside = False
        self.originals: dict[str, Callable[..., Any]] = {
            name: getattr(random, name) for name in ROUTED if hasattr(random, name)
        }

    def route(self, name: str) -> Callable[..., Any]:
        shared, own = self.originals[name], getattr(self.generator, name)

        def routed(*arguments: Any, **keywords: Any) -> Any:
            if self.inside and threading.get_ident() == self.owner:
                return own(*arguments, **keywords)
            return shared(*arguments, **keywords)

        return routed


_active: list[_Routing] = []


@contextmanager
def isolated_random() -> Iterator[None]:
    """Route `random`'s functions for the duration of a run (on the calling thread)."""
    routing = _Routing()
    for name in routing.originals:
        setattr(random, name, routing.route(name))
    _active.append(routing)
    try:
        yield
    finally:
        _active.remove(routing)
        for name, original in routing.originals.items():
            setattr(random, name, original)


@contextmanager
def program_code() -> Iterator[None]:
    """Mark the program's own calls (build, step, state_dict, load_state_dict): they draw from its generator."""
    if not _active:
        yield
        return
    routing = _active[-1]
    routing.inside = True
    try:
        yield
    finally:
        routing.inside = False


def python_generator() -> PythonGenerator:
    """The program's Python generator: its own while a run routes `random`, else the module's shared one."""
    if _active:
        return _active[-1].generator
    return random  # the module's functions act on the shared generator
