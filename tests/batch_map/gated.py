"""A map function that waits at a batch the test picks: `tests.batch_map.gated:GatedMeasure`.

It measures text as the example function does, except that the batch holding item `hold_at`
writes `GATE.reached` and waits until `GATE.release` exists. A kill then lands while that batch
is in flight, whatever the machine's speed; once released, the same job runs straight through.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tasks.batch_map.examples.text import measure

RELEASE_TIMEOUT_S = 600.0


class GatedMeasure:
    """`tasks.batch_map.examples.text:measure`, held at the batch of `hold_at` until the test releases it."""

    def __init__(self, gate: str, hold_at: str) -> None:
        self.reached, self.released = Path(f"{gate}.reached"), Path(f"{gate}.release")
        self.hold_at = hold_at

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, int]]:
        if any(item.get("id") == self.hold_at for item in batch) and not self.released.exists():
            self.reached.touch()
            deadline, waiting = time.monotonic() + RELEASE_TIMEOUT_S, threading.Event()
            while not self.released.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.released} was not created within {RELEASE_TIMEOUT_S:.0f} s")
                waiting.wait(0.05)
        return measure(batch)
