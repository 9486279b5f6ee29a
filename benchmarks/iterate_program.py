"""The iterate benchmark's program: a large float32 state and a step of fixed cost that leaves the CPU free.

`StateProgram` holds one float32 tensor of `state_mib` MiB, cut into `regions` equal regions.
Step `i` adds 1 to region `i % regions` in place (1/16 of the state by default), reads back that
region's level, then sleeps out the rest of `step_ms`, as a training step does while its kernels
run on a GPU: the interpreter and the CPU are free for a checkpoint writer meanwhile. The level
of step `i` is `i // regions + 1` (`expected_level`), so a resumed run that loaded a wrong state
reports wrong levels.

With a `marker` path, each process appends one JSON line when it has built the program, one when
`load_state_dict` has run, and one at its first step, with `time.time()`: the pool phase of
benchmarks/iterate.py times a resume from them. Every other step writes nothing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch

from tasks.errors import InvalidParameterError
from tasks.iterations.examples.params import read_float, read_int, reject_unknown

DEFAULTS = {"state_mib": "100", "step_ms": "50", "regions": "16", "marker": ""}
FLOAT32_BYTES = 4


def expected_level(iteration: int, regions: int) -> float:
    """The `level` metric step `iteration` reports when every earlier step ran exactly once."""
    return float(iteration // regions + 1)


class StateProgram:
    """A state of `state_mib` MiB of float32 and a step of `step_ms` that changes 1/`regions` of it in place.

    Params: state_mib (100), step_ms (50), regions (16), marker (a JSONL path, or empty for none).
    """

    def __init__(self, params: dict[str, str], seed: int) -> None:
        """Allocate the state (zeros: the seed changes nothing) and note the build in the marker."""
        reject_unknown(params, DEFAULTS, "StateProgram")
        state_mib = read_int(params, "state_mib", DEFAULTS["state_mib"], 1, 1 << 16)
        self.step_seconds = read_float(params, "step_ms", DEFAULTS["step_ms"], 0.0, 60_000.0, allow_low=True) / 1000
        self.regions = read_int(params, "regions", DEFAULTS["regions"], 1, 1 << 20)
        elements = state_mib * (1 << 20) // FLOAT32_BYTES
        if elements % self.regions:
            raise InvalidParameterError(
                f"param 'regions' must divide the state's {elements} float32 values; got {self.regions}: "
                "use a power of 2"
            )
        self.marker = params.get("marker", DEFAULTS["marker"])
        self.state = torch.zeros(elements, dtype=torch.float32)
        self.stepped = False
        self.mark("built", None)

    def mark(self, event: str, iteration: int | None) -> None:
        """Append `event` with this process's id and the wall clock to the marker file, if there is one."""
        if self.marker:
            line = {"event": event, "pid": os.getpid(), "at": time.time(), "iteration": iteration}
            with open(self.marker, "a") as marker:
                marker.write(json.dumps(line) + "\n")

    def step(self, iteration: int) -> dict[str, float]:
        """Add 1 to region `iteration % regions`, then wait out the rest of the step time."""
        started = time.perf_counter()
        region = self.state.view(self.regions, -1)[iteration % self.regions]
        region.add_(1.0)
        level = float(region[0])
        if not self.stepped:
            self.stepped = True
            self.mark("first_step", iteration)
        time.sleep(max(0.0, self.step_seconds - (time.perf_counter() - started)))
        return {"level": level}

    def state_dict(self) -> dict[str, Any]:
        """The live tensor: colabflow copies it before the next step may change it."""
        return {"state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a saved state into the live tensor; refuse one of another size."""
        saved = state["state"]
        if not isinstance(saved, torch.Tensor) or saved.shape != self.state.shape:
            raise InvalidParameterError(
                f"the saved state has shape {getattr(saved, 'shape', None)}, expected {tuple(self.state.shape)}; "
                "resume with the state_mib the run started with"
            )
        self.state.copy_(saved)
        self.mark("loaded", None)
