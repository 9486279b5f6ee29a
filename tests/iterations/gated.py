"""Writes, outside the repository, a program that wraps an example and can stop at an iteration the test picks.

The wrapper steps exactly like the example, except that at `GATE_ITERATION` it writes
`GATE_FILE` and blocks until the test kills its process (or, with `GATE_UNTIL=drain`, until a
drain's signal has reached the loop; with `GATE_UNTIL=release`, until `GATE_FILE.release`
exists; then it finishes the step): the kill or the drain lands at an iteration the test chose,
whatever this machine's speed, and the uninterrupted run (no gate) is the same program. Every wrapper turns torch's deterministic algorithms on.
"""

from __future__ import annotations

import sys
from pathlib import Path

TEMPLATE = '''
import os
import threading
from pathlib import Path

import torch

from tasks.iterations.drain import stop_requested
from tasks.iterations.examples.{module} import {name} as Example


class Gated(Example):
    def __init__(self, params, seed):
        torch.use_deterministic_algorithms(True)
        super().__init__(params, seed)

    def step(self, iteration):
        if os.environ.get("GATE_ITERATION") == str(iteration):
            Path(os.environ["GATE_FILE"]).write_text(str(iteration))
            until = os.environ.get("GATE_UNTIL")
            if until not in ("drain", "release"):
                threading.Event().wait()
            release = Path(os.environ["GATE_FILE"] + ".release")
            waited = threading.Event()
            for _ in range(12000):
                if stop_requested() if until == "drain" else release.exists():
                    break
                waited.wait(0.05)
        return super().step(iteration)
'''


def write_gated_program(folder: Path, module: str, name: str) -> str:
    """A package `labprograms` in `folder` (put on PYTHONPATH) whose `gated:Gated` wraps the example; its reference."""
    package = folder / "labprograms"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / f"gated_{module}.py").write_text(TEMPLATE.format(module=module, name=name))
    sys.modules.pop(f"labprograms.gated_{module}", None)
    return f"labprograms.gated_{module}:Gated"
