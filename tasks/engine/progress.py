"""A job's progress while it runs: items done, the rate of this attempt and the time left.

The rate counts only the items this attempt computed, over the time since it started, so
batches loaded from their done markers (a resumed job) neither inflate it nor hide the real
pace. One line per batch goes to the run's log, and the same figures to the progress artifact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.engine.models import BatchOutcome


def duration_text(seconds: float) -> str:
    """`42 s`, `17 min`, `3.4 h`: a time left as a person reads it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class JobProgress:
    """Batches and items done so far, counted once per batch index."""

    items_total: int
    batches_total: int
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    items_done: int = 0
    items_computed: int = 0  # by this attempt: what the rate is made of
    done: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def record(self, index: int, outcome: BatchOutcome) -> bool:
        """Count batch `index` once; False when it was already counted."""
        if index in self.done:
            return False
        self.done.add(index)
        items = len(outcome.result.outputs) if outcome.result is not None else 0
        self.items_done += items
        if not outcome.from_checkpoint:
            found = len(outcome.result.found_at_destination) if outcome.result is not None else 0
            self.items_computed += items - found
        return True

    def items_per_second(self) -> float | None:
        elapsed = self.clock() - self.started
        return self.items_computed / elapsed if self.items_computed and elapsed > 0 else None

    def seconds_left(self) -> float | None:
        rate = self.items_per_second()
        return max(0, self.items_total - self.items_done) / rate if rate else None

    def percent(self) -> float:
        return 100.0 * len(self.done) / self.batches_total if self.batches_total else 100.0

    def describe(self) -> str:
        """`96 of 21456 items, 0.18 items/s, about 33.1 h left`."""
        text = f"{self.items_done} of {self.items_total} items"
        rate, left = self.items_per_second(), self.seconds_left()
        if rate is not None and left is not None:
            text += f", {rate:.3g} items/s, about {duration_text(left)} left"
        return text
