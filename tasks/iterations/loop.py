"""The iterate loop: steps, metrics, early stopping and checkpoints, with no Prefect in sight.

A run builds the program seeded, loads the checkpoint in force (its state, then every global
generator's state), and steps from the next iteration. After each step it records the metrics,
updates the best value and the early-stop count (both part of the checkpoint), and checkpoints
every K iterations or M minutes. A stop (the end, early stopping, a drain or the quota) writes
a last checkpoint and waits until it is durable, so the final state is always on storage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import JsonValue

from tasks.engine.job_folder import JobFolder
from tasks.errors import InvalidParameterError, InvalidProgramError
from tasks.iterations.checkpoints import prune_checkpoints, write_checkpoint
from tasks.iterations.models import (
    BestValue,
    LoadedCheckpoint,
    LoopState,
    Snapshot,
    StopReason,
)
from tasks.iterations.parameters import Objective
from tasks.iterations.program import Program, checked_metrics
from tasks.iterations.python_random import program_code
from tasks.iterations.rng_states import capture_generators, restore_generators
from tasks.iterations.state_digest import state_digest
from tasks.iterations.state_format import decode_state, encode_state
from tasks.iterations.writer import CheckpointWriter


@dataclass(frozen=True)
class LoopPlan:
    """How far to go, when to checkpoint and when to stop early."""

    iterations: int
    every_iterations: int | None
    every_seconds: float | None
    keep_last: int = 3
    stopping: tuple[Objective, int] | None = None
    best_of: Objective | None = None
    asynchronous: bool = True


class LoopObserver(Protocol):
    """Told of each step and checkpoint, for logs and the progress artifact."""

    def after_step(self, iteration: int, metrics: dict[str, float], loop: LoopState) -> None: ...

    def after_checkpoint(self, name: str) -> None:
        """Checkpoint `name` (the iterations it holds, ten digits) is durable and in force."""
        ...


def resume_program(program: Program, reference: str, identity: dict[str, JsonValue],
                   checkpoint: LoadedCheckpoint) -> list[str]:
    """Load the checkpoint into a freshly built program, then the generators; warnings about those."""
    if checkpoint.identity != identity:
        raise InvalidParameterError(
            f"the job's checkpoints were written by {checkpoint.identity!r}, and this run asks for {identity!r}; "
            "an exact resume needs the same program, params and seed: run the new ones under a new --job name"
        )
    saved = decode_state(checkpoint.encoded, copy=False)
    program_state, generators = saved.get("program"), saved.get("generators")
    if not isinstance(program_state, dict) or not isinstance(generators, dict):
        raise InvalidParameterError(f"checkpoint {checkpoint.name} holds no program state; start a new --job")
    with program_code():
        program.load_state_dict(program_state)
    return restore_generators(generators)


def snapshot_of(program: Program, reference: str, identity: dict[str, JsonValue], loop: LoopState,
                lines: list[bytes]) -> Snapshot:
    """The program's state and every generator's, copied now (tensors to host memory)."""
    with program_code():
        state = program.state_dict()
    if not isinstance(state, dict):
        raise InvalidProgramError(f"program {reference!r}: state_dict() returned a {type(state).__name__}, not a dict")
    encoded = encode_state({"program": state, "generators": capture_generators()})
    return Snapshot(identity=identity, loop=loop, encoded=encoded, metrics_lines=lines)


def final_state_sha256(program: Program, reference: str) -> str:
    """sha256 of the program's canonical serialised state (tasks/iterations/state_format.py)."""
    with program_code():
        state = program.state_dict()
    if not isinstance(state, dict):
        raise InvalidProgramError(f"program {reference!r}: state_dict() returned a {type(state).__name__}, not a dict")
    return state_digest(encode_state(state))


def advance(loop: LoopState, iteration: int, metrics: dict[str, float], plan: LoopPlan) -> LoopState:
    """The loop state after `iteration`: its count, the best value and the early-stop count."""
    changes: dict[str, object] = {"iterations_done": iteration + 1}
    if plan.best_of is not None and plan.best_of.metric in metrics:
        value = metrics[plan.best_of.metric]
        if plan.best_of.better(value, loop.best.value if loop.best else None):
            changes["best"] = BestValue(metric=plan.best_of.metric, value=value, iteration=iteration)
    if plan.stopping is not None and plan.stopping[0].metric in metrics:
        objective, patience = plan.stopping
        value = metrics[objective.metric]
        if objective.better(value, loop.early_stop_best):
            changes.update(early_stop_best=value, reports_without_improvement=0)
        else:
            waited = loop.reports_without_improvement + 1
            changes.update(reports_without_improvement=waited, early_stopped=waited >= patience)
    return loop.model_copy(update=changes)


def finished(loop: LoopState, plan: LoopPlan) -> StopReason | None:
    if loop.early_stopped:
        return "early_stop"
    return "completed" if loop.iterations_done >= plan.iterations else None


def metric_line(iteration: int, metrics: dict[str, float]) -> bytes:
    return json.dumps({"iteration": iteration, **metrics}, separators=(",", ":")).encode() + b"\n"


def run_loop(
    program: Program, reference: str, identity: dict[str, JsonValue], folder: JobFolder, plan: LoopPlan,
    start: LoopState, stop_requested: Callable[[], StopReason | None], observer: LoopObserver,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[LoopState, StopReason, list[str]]:
    """Step from `start` until the plan ends or a stop is asked for; the loop state, why, and the checkpoints."""
    def write(snapshot: Snapshot) -> str:
        name = write_checkpoint(folder, snapshot)
        prune_checkpoints(folder, plan.keep_last, name)
        return name

    writer = CheckpointWriter(write, plan.asynchronous)
    loop, lines, last_at = start, list[bytes](), clock()
    reason = finished(loop, plan)
    try:
        while reason is None:
            iteration = loop.iterations_done
            with program_code():
                result = program.step(iteration)
            metrics = checked_metrics(reference, iteration, result)
            lines.append(metric_line(iteration, metrics))
            loop = advance(loop, iteration, metrics, plan)
            observer.after_step(iteration, metrics, loop)
            reason = finished(loop, plan) or stop_requested()
            if reason is None and checkpoint_due(loop, plan, clock() - last_at, len(lines)):
                writer.submit(snapshot_of(program, reference, identity, loop, lines))
                lines, last_at = [], clock()
            for name in writer.finished():
                observer.after_checkpoint(name)
        if lines:
            writer.submit(snapshot_of(program, reference, identity, loop, lines))
        writer.wait()
        for name in writer.finished():
            observer.after_checkpoint(name)
    finally:
        writer.close()
    return loop, reason, writer.written


def checkpoint_due(loop: LoopState, plan: LoopPlan, seconds: float, pending: int) -> bool:
    """Every K iterations (counted from 0, so runs agree on where), or once M minutes have passed."""
    if plan.every_iterations is not None and loop.iterations_done % plan.every_iterations == 0:
        return True
    return plan.every_seconds is not None and pending > 0 and seconds >= plan.every_seconds
