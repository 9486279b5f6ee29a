"""Simulated annealing of a layout: N items into N slots, the program colabflow resumes exactly.

The problem is a quadratic assignment, like laying out a keyboard: items that are used together
(the seeded `affinity` matrix) should sit in nearby slots (grid distances). Each step tries
`moves_per_step` swaps of two items and keeps each by the Metropolis rule, then cools.

What must go into the state for a resume to end bit for bit where an uninterrupted run ends:
the current and best assignments and costs, the temperature, and the state of the program's own
`numpy.random.Generator` (`bit_generator.state`, a JSON dict). The matrices are rebuilt from the
seed, so they stay out of it. colabflow restores the global generators itself; this program
never touches them.

The helpers `read_int`, `read_float`, `read_choice` and `reject_unknown` turn the string
params of `--param key=value` into values, or into an `InvalidParameterError` (a ValueError)
that names the param; `train.py` uses them too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy
from numpy.typing import NDArray

from tasks.errors import InvalidParameterError
from tasks.iterations.examples.params import read_float, read_int, reject_unknown

DEFAULTS = {"size": "64", "temperature": "10.0", "cooling": "0.9993", "moves_per_step": "10"}


def build_problem(size: int, rng: numpy.random.Generator) -> tuple[NDArray[numpy.float64], NDArray[numpy.float64]]:
    """A symmetric, sparse-ish affinity between items and the grid distance between slots."""
    upper = numpy.triu(rng.random((size, size)) ** 4, 1)
    columns = math.ceil(math.sqrt(size))
    slots = numpy.stack([numpy.arange(size) // columns, numpy.arange(size) % columns], axis=1).astype(float)
    distance = numpy.sqrt(((slots[:, None, :] - slots[None, :, :]) ** 2).sum(axis=-1))
    return upper + upper.T, distance


class HillClimb:
    """Anneal an assignment of `size` items to `size` slots; each step is a few Metropolis swaps.

    Params: size (64), temperature (10.0, in cost units: a random swap moves the cost by about 10
    at size 64), cooling (0.9993 per step), moves_per_step (10).
    """

    def __init__(self, params: dict[str, str], seed: int) -> None:
        """Parse params and build the problem and the search generator from `seed`."""
        reject_unknown(params, DEFAULTS, "HillClimb")
        self.size = read_int(params, "size", DEFAULTS["size"], 2, 2048)
        self.temperature = read_float(params, "temperature", DEFAULTS["temperature"], 0.0, math.inf)
        self.cooling = read_float(params, "cooling", DEFAULTS["cooling"], 0.0, 1.0)
        self.moves_per_step = read_int(params, "moves_per_step", DEFAULTS["moves_per_step"], 1, 100_000)
        problem_seed, search_seed = numpy.random.SeedSequence(seed).spawn(2)
        self.affinity, self.distance = build_problem(self.size, numpy.random.default_rng(problem_seed))
        self.rng = numpy.random.default_rng(search_seed)
        self.assignment = self.rng.permutation(self.size).astype(numpy.int64)
        self.cost = self.cost_of(self.assignment)
        self.best_assignment = self.assignment.copy()
        self.best_cost = self.cost

    def cost_of(self, assignment: NDArray[numpy.int64]) -> float:
        """The full cost: affinity times the distance between the slots of each pair of items."""
        return float((self.affinity * self.distance[numpy.ix_(assignment, assignment)]).sum())

    def swap_delta(self, first: int, second: int) -> float:
        """The cost change of swapping two items' slots, in O(size) (both matrices are symmetric)."""
        slots = self.assignment
        terms = (self.affinity[first] - self.affinity[second]) * (
            self.distance[slots[second], slots] - self.distance[slots[first], slots]
        )
        terms[[first, second]] = 0.0
        return 2.0 * float(terms.sum())

    def step(self, iteration: int) -> dict[str, float]:
        """Try `moves_per_step` swaps at the current temperature, then cool."""
        firsts = self.rng.integers(0, self.size, self.moves_per_step)
        seconds = (firsts + self.rng.integers(1, self.size, self.moves_per_step)) % self.size
        chances = self.rng.random(self.moves_per_step)
        accepted = 0
        for first, second, chance in zip(firsts.tolist(), seconds.tolist(), chances.tolist()):
            delta = self.swap_delta(first, second)
            if delta <= 0.0 or chance < math.exp(-delta / self.temperature):
                self.assignment[[first, second]] = self.assignment[[second, first]]
                self.cost += delta
                accepted += 1
                if self.cost < self.best_cost:
                    self.best_cost = self.cost
                    self.best_assignment = self.assignment.copy()
        metrics = {"cost": self.cost, "best_cost": self.best_cost, "temperature": self.temperature,
                   "accepted": accepted / self.moves_per_step}
        self.temperature *= self.cooling
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Copies of everything a step changes, with the generator as its JSON state dict."""
        return {
            "assignment": self.assignment.copy(),
            "best_assignment": self.best_assignment.copy(),
            "cost": self.cost,
            "best_cost": self.best_cost,
            "temperature": self.temperature,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; refuse one saved with another `size`."""
        assignment = numpy.asarray(state["assignment"], dtype=numpy.int64)
        if assignment.shape != (self.size,):
            raise InvalidParameterError(
                f"the saved assignment has shape {assignment.shape}, expected ({self.size},); "
                "resume with the params the run started with"
            )
        self.assignment = assignment.copy()
        self.best_assignment = numpy.asarray(state["best_assignment"], dtype=numpy.int64).copy()
        self.cost = float(state["cost"])
        self.best_cost = float(state["best_cost"])
        self.temperature = float(state["temperature"])
        self.rng.bit_generator.state = state["rng"]
