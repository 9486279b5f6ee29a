"""One run of an iterative job, from its parameters to its outcome, with no Prefect in it.

Load the program under the allowlist, build it seeded, resume from the checkpoint in force (or
start), step to the end or a stop, then put `metrics.jsonl` together and digest the final state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import JsonValue

from tasks.engine.job_folder import JobFolder
from tasks.iterations.checkpoints import checkpoint_name, sha256_hex
from tasks.iterations.loop import (
    LoopObserver,
    LoopPlan,
    final_state_sha256,
    resume_program,
    run_loop,
)
from tasks.iterations.metrics_file import METRICS_NAME, write_metrics_file
from tasks.iterations.models import LoopState, StopReason
from tasks.iterations.parameters import IterateJob
from tasks.iterations.program import build_program, load_program_class
from tasks.iterations.python_random import isolated_random
from tasks.iterations.resume import clear_after, find_in_force


@dataclass(frozen=True)
class IterationRun:
    """What one run did."""

    loop: LoopState
    resumed_from: int | None
    checkpoints_written: list[str]
    final_state_sha256: str
    stopped_reason: StopReason
    metrics_sha256: str
    metrics_path: str
    metrics: bytes = field(repr=False)
    warnings: list[str] = field(default_factory=list)


def identity_of(request: IterateJob) -> dict[str, JsonValue]:
    """What a checkpoint must have been written by for this run to resume from it."""
    return {"program": request.program, "params": dict(sorted(request.params.items())), "seed": request.seed}


def plan_of(request: IterateJob, asynchronous: bool = True) -> LoopPlan:
    minutes = request.checkpoint_every_minutes
    return LoopPlan(
        iterations=request.iterations, every_iterations=request.checkpoint_every_iterations,
        every_seconds=None if minutes is None else minutes * 60.0, keep_last=request.keep_last,
        stopping=request.stopping(), best_of=request.best_of(), asynchronous=asynchronous,
    )


def run_iterations(
    request: IterateJob, folder: JobFolder, stop_requested: Callable[[], StopReason | None], observer: LoopObserver,
    warn: Callable[[str], None], asynchronous: bool = True,
) -> IterationRun:
    """Run the job from the checkpoint in force to the end or a stop; the final state is durable when it returns."""
    with isolated_random():
        program = build_program(load_program_class(request.program), request.program, request.params, request.seed)
        identity = identity_of(request)
        checkpoint, warnings = find_in_force(folder)
        start, resumed_from = LoopState(iterations_done=0), None
        if checkpoint is not None:
            warnings += resume_program(program, request.program, identity, checkpoint)
            start, resumed_from = checkpoint.loop, checkpoint.loop.iterations_done
        clear_after(folder, checkpoint)
        for warning in warnings:
            warn(warning)
        loop, reason, written = run_loop(program, request.program, identity, folder, plan_of(request, asynchronous),
                                         start, stop_requested, observer)
        metrics = write_metrics_file(folder, checkpoint_name(loop.iterations_done))
    return IterationRun(
        loop=loop, resumed_from=resumed_from, checkpoints_written=written,
        final_state_sha256=final_state_sha256(program, request.program), stopped_reason=reason,
        metrics_sha256=sha256_hex(metrics), metrics_path=folder.uri(folder.key(METRICS_NAME)), metrics=metrics,
        warnings=warnings,
    )
