"""What an iterative job keeps between runs (its loop state) and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field, JsonValue

from tasks.engine.models import JobReportBase
from tasks.iterations.state_format import EncodedState

StopReason = Literal["completed", "early_stop", "drain", "quota"]


class BestValue(BaseModel):
    """The best value a metric reached, and at which iteration."""

    metric: str
    value: float
    iteration: int


class LoopState(BaseModel):
    """The loop's own state, saved in every checkpoint so a resumed run decides exactly as an unbroken one."""

    iterations_done: int = Field(ge=0, description="Iterations 0 .. iterations_done-1 are in the state.")
    best: BestValue | None = None
    early_stop_best: float | None = Field(default=None, description="Best value of the early-stop metric so far.")
    reports_without_improvement: int = Field(default=0, ge=0)
    early_stopped: bool = False


@dataclass(frozen=True)
class Snapshot:
    """One checkpoint's content, copied off the live program so steps may go on while it is written."""

    identity: dict[str, JsonValue]
    loop: LoopState
    encoded: EncodedState = field(repr=False)
    metrics_lines: list[bytes] = field(repr=False)


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read back and verified."""

    name: str
    state_sha256: str
    identity: dict[str, JsonValue]
    loop: LoopState
    encoded: EncodedState = field(repr=False)


class IterateReport(JobReportBase):
    """What `colabflow iterate --json` prints and the callback carries."""

    iterations_total: int
    iterations_done: int
    resumed_from: int | None = Field(description="The iteration this run resumed at (iterations already done), or null.")
    checkpoints_written: int = Field(description="Checkpoints this run wrote.")
    final_state_sha256: str = Field(description="sha256 of the program's canonical serialised state at the end.")
    best: BestValue | None
    stopped_reason: StopReason | None = Field(
        default=None, description="completed, early_stop, drain or quota."
    )
    metrics_path: str = Field(description="Where metrics.jsonl is: one line per iteration.")
    warnings: list[str] = Field(default_factory=list, description="Broken checkpoints skipped, RNG states not restored.")
