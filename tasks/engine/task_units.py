"""Task units: one Prefect task run carries several batches, so the server sees tens of task runs.

The unit's outcomes are persisted under a key made of its batches' keys: a rerun of a finished
job loads one record per unit. A unit whose record holds a failure is run again (its committed
batches load from their done markers, the failed ones are tried again). The flow-side loop
`run_batches` checks the quota before each unit and keeps the ledger and progress bar current.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from tasks.engine.artifacts import ProgressArtifact
from tasks.engine.batches import MAX_TASK_RUNS, run_batch, salvage_batch, task_units
from tasks.engine.checkpoints import (
    TASK_RUN_PREFIX,
    batch_checkpoint_key,
    checkpoint_storage,
    read_commit,
    unit_checkpoint_key,
    unit_run_name,
)
from tasks.engine.kinds import ReadsAhead, batch_kind
from tasks.engine.models import (
    BatchOutcome,
    ItemFingerprint,
    JobPlan,
    JobSettings,
    TaskUnitResult,
)
from tasks.engine.progress import JobProgress
from tasks.engine.spend import SpendRecorder, quota_stop
from tasks.engine.unwalked import unwalked
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient

BatchDone = Callable[[int, BatchOutcome], None]
READ_AHEAD_BATCHES = 2  # how far a kind that reads ahead is told of coming batches


def run_unit(
    batches: list[list[ItemFingerprint]], settings: JobSettings, first_index: int, refresh: bool,
    on_batch: BatchDone | None = None, coming: list[list[ItemFingerprint]] | None = None,
) -> TaskUnitResult:
    """Run a unit's batches in order, each committed on its own; `on_batch` hears of each as it ends.

    A kind that reads ahead is told, before each batch, of that batch and the next
    `READ_AHEAD_BATCHES`, the first ones of the next unit (`coming`) included.
    """
    kind = batch_kind(settings.kind)
    following = [*batches, *(coming or [])]
    outcomes = []
    for offset, batch in enumerate(batches):
        if isinstance(kind, ReadsAhead):
            kind.read_ahead(following[offset:offset + 1 + READ_AHEAD_BATCHES], settings)
        outcome = run_batch(batch, settings, first_index + offset, refresh)
        if on_batch is not None:
            on_batch(first_index + offset, outcome)
        outcomes.append(outcome)
    return TaskUnitResult(outcomes=outcomes)


def _unit_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    settings: JobSettings = parameters["settings"]
    return unit_checkpoint_key([batch_checkpoint_key(batch, settings) for batch in parameters["batches"]])


@task(
    name=TASK_RUN_PREFIX,
    cache_key_fn=_unit_key,
    persist_result=True,
    result_serializer="json",
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
)
def run_unit_task(
    batches: list[list[ItemFingerprint]], settings: JobSettings, first_index: int, refresh: bool,
    on_batch: BatchDone | None = None, coming: list[list[ItemFingerprint]] | None = None,
) -> TaskUnitResult:
    """Run a task unit; the result is the unit's checkpoint. Only `batches` and `settings` make its key."""
    result = run_unit(batches, settings, first_index, refresh, on_batch, coming)
    done = [outcome.result for outcome in result.outcomes if outcome.result is not None]
    get_run_logger().info(
        "%d batches: %d from their done markers, %d items done, %d found in the job folder, %d failed",
        len(batches), sum(outcome.from_checkpoint for outcome in result.outcomes),
        sum(len(r.outputs) - len(r.found_at_destination) for r in done),
        sum(len(r.found_at_destination) for r in done), sum(len(r.failures) for r in done),
    )
    return result


def _unit_state(batches: list[list[ItemFingerprint]], settings: JobSettings, first_index: int, refresh_cache: bool,
                refresh: bool, on_batch: BatchDone | None, coming: list[list[ItemFingerprint]]) -> State[TaskUnitResult]:
    key = unit_checkpoint_key([batch_checkpoint_key(batch, settings) for batch in batches])
    runner = run_unit_task.with_options(
        result_storage=checkpoint_storage(settings), refresh_cache=refresh_cache,
        task_run_name=unit_run_name(key, len(batches)),
    )
    return runner(unwalked(batches), settings, first_index, refresh, on_batch, unwalked(coming), return_state=True)


def _trusted(state: State[TaskUnitResult]) -> TaskUnitResult | None:
    """The unit's result, unless it failed or is a loaded record that holds a failure."""
    if not state.is_completed():
        return None
    result = state.result()
    loaded_with_failures = state.name == "Cached" and any(
        outcome.result is None or outcome.result.failures for outcome in result.outcomes
    )
    return None if loaded_with_failures else result


def run_task_unit(
    batches: list[list[ItemFingerprint]], settings: JobSettings, first_index: int, refresh: bool,
    on_batch: BatchDone | None = None, coming: list[list[ItemFingerprint]] | None = None,
) -> list[BatchOutcome]:
    """A unit's outcomes: from its record, else run (again); a unit that failed as a whole loses nothing.

    When the unit task fails for good, each batch is taken from its done marker where it has one,
    else reported with the unit's error.
    """
    started = time.perf_counter()
    state = _unit_state(batches, settings, first_index, refresh, refresh, on_batch, coming or [])
    result = _trusted(state)
    if result is None and state.is_completed():
        state = _unit_state(batches, settings, first_index, True, refresh, on_batch, coming or [])
        result = _trusted(state)
    if result is not None:
        if state.name != "Cached":
            return result.outcomes
        share = (time.perf_counter() - started) / len(batches)
        return [outcome.model_copy(update={"from_checkpoint": True, "seconds": share}) for outcome in result.outcomes]
    error = state.result(raise_on_failure=False)
    message = str(error) if isinstance(error, BaseException) else state.message or str(state.name)
    return [_after_unit_failure(batch, settings, message) for batch in batches]


def _after_unit_failure(batch: list[ItemFingerprint], settings: JobSettings, message: str) -> BatchOutcome:
    item_ids = [item.item_id for item in batch]
    committed = read_commit(settings, batch_checkpoint_key(batch, settings))
    if committed is not None:
        return BatchOutcome(item_ids=item_ids, result=committed, from_checkpoint=True)
    return BatchOutcome(item_ids=item_ids, result=salvage_batch(batch_kind(settings.kind), batch, settings, message), error=message)


def run_batches(
    plan: JobPlan, settings: JobSettings, refresh: bool, spend: SpendRecorder, spent_before: float,
    max_task_runs: int = MAX_TASK_RUNS,
) -> tuple[list[BatchOutcome], str | None]:
    """Every batch of the plan, unit by unit, until the quota would be passed; returns why it stopped early.

    `spend` keeps the attempt's ledger line current; `spent_before` is what the ledger held before;
    the batches are spread over at most `max_task_runs` task runs.
    """
    progress = JobProgress(sum(len(batch) for batch in plan.batches), len(plan.batches))
    artifact = ProgressArtifact(settings.job, progress)
    budget = spend.budget
    outcomes: list[BatchOutcome] = []

    def batch_done(index: int, outcome: BatchOutcome) -> None:
        if progress.record(index, outcome) and not outcome.from_checkpoint:
            get_run_logger().info("batch %d of %d: %d items in %.2f s; %s", index + 1, len(plan.batches),
                                  len(outcome.item_ids), outcome.seconds, progress.describe())
        artifact.update()

    for unit in task_units(len(plan.batches), max_task_runs):
        stopped = quota_stop(budget, spent_before, outcomes, len(plan.batches) - unit.start, settings.device)
        if stopped is not None:
            get_run_logger().warning("job %s: %s", settings.job, stopped)
            return outcomes, stopped
        coming = plan.batches[unit.stop:unit.stop + READ_AHEAD_BATCHES]
        for offset, outcome in enumerate(run_task_unit(plan.batches[unit.start:unit.stop], settings, unit.start,
                                                       refresh, batch_done, coming)):
            batch_done(unit.start + offset, outcome)
            outcomes.append(outcome)
            spend.after_batch(outcome)
    return outcomes, None
