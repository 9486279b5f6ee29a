"""What a running iterative job shows: a log line now and then, the progress artifact, and its stops.

The rate counts only the iterations this attempt computed, so a resumed run's rate is its own.
The artifact is updated at most every few seconds, and the log gets one line per checkpoint and
one a minute at most: a step may take 100 microseconds, and each update is an API call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.engine.artifacts import artifact_key
from tasks.engine.progress import duration_text
from tasks.iterations.models import LoopState

ARTIFACT_EVERY_SECONDS = 2.0
LOG_EVERY_SECONDS = 60.0


class IterationProgress:
    """The loop's observer: keeps the progress artifact and the log current."""

    def __init__(self, job: str, iterations: int, logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
                 on_checkpoint: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic) -> None:
        self.job, self.iterations, self.logger, self.clock = job, iterations, logger, clock
        self.on_checkpoint = on_checkpoint
        self.started = clock()
        self.first: int | None = None  # the first iteration this attempt computed
        self.loop = LoopState(iterations_done=0)
        self.last_checkpoint: str | None = None
        self.artifact_at = self.logged_at = self.started
        self.artifact_id = UUID(str(create_progress_artifact(
            progress=self.percent(), key=artifact_key(job) + "-progress", description=f"{job}: {self.describe()}")))

    def percent(self) -> float:
        return min(100.0, 100.0 * self.loop.iterations_done / self.iterations)

    def rate(self) -> float | None:
        elapsed = self.clock() - self.started
        done = self.loop.iterations_done - self.first if self.first is not None else 0
        return done / elapsed if done and elapsed > 0 else None

    def describe(self) -> str:
        """`iteration 1200 of 10000, best cost 2750 (at 1100), 830 it/s, about 11 s left, checkpoint 0000001000`."""
        text = f"iteration {self.loop.iterations_done} of {self.iterations}"
        if self.loop.best is not None:
            text += f", best {self.loop.best.metric} {self.loop.best.value:.6g} (at {self.loop.best.iteration})"
        rate = self.rate()
        if rate:
            left = max(0, self.iterations - self.loop.iterations_done) / rate
            text += f", {rate:.3g} it/s, about {duration_text(left)} left"
        return text + (f", checkpoint {self.last_checkpoint}" if self.last_checkpoint else ", no checkpoint yet")

    def after_step(self, iteration: int, metrics: dict[str, float], loop: LoopState) -> None:
        now = self.clock()
        if self.first is None:
            self.first, self.started = iteration, now
        self.loop = loop
        if now - self.artifact_at >= ARTIFACT_EVERY_SECONDS:
            self.show()
        if now - self.logged_at >= LOG_EVERY_SECONDS:
            self.logger.info("%s: %s", self.job, self.describe())
            self.logged_at = now

    def after_checkpoint(self, name: str) -> None:
        self.last_checkpoint = name
        self.logger.info("%s: checkpoint %s durable (%s)", self.job, name, self.describe())
        self.logged_at = self.clock()
        self.on_checkpoint()

    def show(self) -> None:
        update_progress_artifact(self.artifact_id, progress=self.percent(), description=f"{self.job}: {self.describe()}")
        self.artifact_at = self.clock()
