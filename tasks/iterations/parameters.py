"""`IterateJob`, the one parameter model of the iterate flow (rendered as a form in the UI)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.engine.parameters import (
    DEFAULT_DESTINATION,
    Callback,
    ComputeBudgetName,
    Destination,
)
from tasks.engine.user_code import CODE_PATH
from tasks.storage.locations import JOB_NAME_PATTERN
from tasks.storage.stores import StorageAccess

METRIC_GOAL = re.compile(r"^(?P<metric>[^:]+):(?P<goal>min|max)$")
EARLY_STOP = re.compile(r"^(?P<metric>[^:]+):(?P<patience>\d+):(?P<goal>min|max)$")


@dataclass(frozen=True)
class Objective:
    """A metric and whether lower or higher is better."""

    metric: str
    goal: Literal["min", "max"]

    def better(self, value: float, best: float | None) -> bool:
        """Whether `value` improves on `best` (any value improves on none; NaN never improves)."""
        if math.isnan(value):
            return False
        return best is None or (value < best if self.goal == "min" else value > best)


def parse_objective(text: str) -> Objective:
    """`loss:min` as an objective."""
    match = METRIC_GOAL.match(text)
    if match is None:
        raise ValueError(f"objective {text!r} is not METRIC:min|max; write it as, for example, 'val_loss:min'")
    return Objective(match["metric"], "min" if match["goal"] == "min" else "max")


def parse_early_stop(text: str) -> tuple[Objective, int]:
    """`val_loss:5:min` as the objective and the patience (iterations that report the metric)."""
    match = EARLY_STOP.match(text)
    if match is None or int(match["patience"]) < 1:
        raise ValueError(
            f"early stop {text!r} is not METRIC:PATIENCE:min|max with PATIENCE >= 1; write it as, for example, "
            "'val_loss:5:min' (stop once val_loss has not improved in 5 reports)"
        )
    return Objective(match["metric"], "min" if match["goal"] == "min" else "max"), int(match["patience"])


class IterateJob(BaseModel):
    """Run an iterative program (hill climbing, training) with checkpoints it resumes from exactly."""

    model_config = ConfigDict(extra="forbid")

    destination: Destination = DEFAULT_DESTINATION
    access: StorageAccess = Field(
        default_factory=StorageAccess, description="Blocks whose credentials reach a remote destination."
    )
    job: str = Field(pattern=JOB_NAME_PATTERN, description="Job name: letters, digits, '.', '_', '-'.")
    program: str = Field(
        pattern=CODE_PATH.pattern,
        description="package.module:Name of a class with __init__(params, seed), step(iteration), state_dict() "
        "and load_state_dict(state). On the pool it must lie under the worker's COLABFLOW_ALLOWED_CODE.",
    )
    iterations: int = Field(gt=0, description="Iterations to reach (numbered 0 to N-1); a resumed job runs the rest.")
    params: dict[str, str] = Field(default_factory=dict, description="The program's parameters, as strings.")
    seed: int = Field(default=0, ge=0, description="Seeds Python's random, numpy's and torch's generators.")
    checkpoint_every_iterations: int | None = Field(
        default=None, gt=0, description="Checkpoint after every K iterations (as well as by time, if set)."
    )
    checkpoint_every_minutes: float | None = Field(
        default=30.0, gt=0, description="Checkpoint once this many minutes have passed since the last one."
    )
    keep_last: int = Field(default=3, ge=1, le=1000, description="Checkpoints kept; older ones are removed.")
    early_stop: str | None = Field(
        default=None, description="METRIC:PATIENCE:min|max: stop once METRIC has not improved in PATIENCE reports."
    )
    objective: str | None = Field(
        default=None, description="METRIC:min|max whose best value the report shows (default: the early-stop metric)."
    )
    callback: Callback | None = Field(default=None, description="Optional notice sent once when the job ends.")
    compute_budget: ComputeBudgetName = None

    @field_validator("early_stop")
    @classmethod
    def _early_stop_form(cls, text: str | None) -> str | None:
        if text is not None:
            parse_early_stop(text)
        return text

    @field_validator("objective")
    @classmethod
    def _objective_form(cls, text: str | None) -> str | None:
        if text is not None:
            parse_objective(text)
        return text

    @model_validator(mode="after")
    def _some_checkpoint_interval(self) -> IterateJob:
        if self.checkpoint_every_iterations is None and self.checkpoint_every_minutes is None:
            raise ValueError(
                "give checkpoint_every_iterations or checkpoint_every_minutes (or both): without either, a kill "
                "would lose the whole run"
            )
        return self

    def stopping(self) -> tuple[Objective, int] | None:
        """The early-stop rule, if any."""
        return parse_early_stop(self.early_stop) if self.early_stop else None

    def best_of(self) -> Objective | None:
        """The metric whose best value is tracked: the objective, else the early-stop metric."""
        if self.objective:
            return parse_objective(self.objective)
        stopping = self.stopping()
        return stopping[0] if stopping else None
