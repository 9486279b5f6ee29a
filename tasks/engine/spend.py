"""Compute-unit spend of a job: its budget, the quota check before each batch, its ledger line.

The flow loads the `ComputeBudget` block once and reads what the destination has spent so far.
Before each batch `quota_stop` counts this run's batch time on top of that, and the flow stops
taking batches when the projection passes the quota. After the first batch that does work, then at
most every `LEDGER_EVERY_SECONDS`, and at the end, the run's wall time so far goes into
`<destination>/ledger.jsonl` as its one (job, flow run, attempt) line, so a runtime that dies
mid-job has recorded all but the last half minute of what it spent.

Units are charged for the runtime, not for where the codec ran: Colab bills a GPU runtime by the
hour whether or not the job used its GPU (`--codec cpu` on an A100 still costs A100 units).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from blocks.compute_budget import ComputeBudget
from tasks.engine.ledger import (
    LedgerEntry,
    append_ledger,
    estimate_units,
    ledger_entry,
    projected_over_quota,
    read_ledger,
    spend,
)
from tasks.engine.models import BatchOutcome, JobSettings
from tasks.errors import InvalidParameterError
from tasks.gpu.devices import detect_gpu_name, gpu_class_of, nvidia_driver_present
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient


def device_class(device: str) -> str:
    """The compute-unit class of a device: 'cpu', or the work-queue class of the GPU's name."""
    return "cpu" if device == "cpu" else gpu_class_of(device)


LEDGER_EVERY_SECONDS = 30.0


@lru_cache(maxsize=1)
def _runtime_gpu_name() -> str | None:
    return detect_gpu_name() if nvidia_driver_present() else None


def runtime_device(codec_device: str) -> str:
    """The device the runtime is billed for: the codec's GPU, else the machine's GPU, else 'cpu'."""
    if codec_device != "cpu":
        return codec_device
    return _runtime_gpu_name() or "cpu"


def quota_stop(
    budget: ComputeBudget, spent_before: float, outcomes: list[BatchOutcome], batches_left: int, device: str
) -> str | None:
    """Why the run should take no more batches, or None while the projected spend fits the quota.

    This run's spend so far is its batches' time; the ledger line written at the end counts the
    run's whole wall time.
    """
    if budget.quota_units is None:
        return None
    gpu_class = device_class(runtime_device(device))
    seconds = [outcome.seconds for outcome in outcomes]
    spent = spent_before + estimate_units(gpu_class, sum(seconds), budget)
    return projected_over_quota(spent, seconds, batches_left, budget, gpu_class)


def load_budget(name: str | None) -> ComputeBudget:
    """The named `ComputeBudget` block, or the default rates with no quota when `name` is None."""
    if name is None:
        return ComputeBudget()
    try:
        return cast(ComputeBudget, ComputeBudget.load(name))
    except ValueError as error:
        raise InvalidParameterError(
            f"compute budget {name!r} is not a saved ComputeBudget block ({error}); save one with "
            f"ComputeBudget(quota_units=...).save({name!r}), or leave the compute budget out for no quota"
        ) from None


@task(name="load-budget", cache_policy=NO_CACHE, persist_result=False)
def load_budget_task(name: str | None) -> ComputeBudget:
    """Load the job's budget once, in the flow's process (blocks are never loaded in batch tasks)."""
    return load_budget(name)


@task(
    name="read-spend", cache_policy=NO_CACHE, persist_result=False,
    retries=len(IO_RETRY_DELAYS), retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def read_spend_task(settings: JobSettings) -> float:
    """Compute units every job at the destination has spent so far."""
    return spend(read_ledger(settings.destination, settings.access))


@task(
    name="record-spend", cache_policy=NO_CACHE, persist_result=False,
    retries=len(IO_RETRY_DELAYS), retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def record_spend_task(settings: JobSettings, budget: ComputeBudget, final: bool = False) -> LedgerEntry:
    """Write this attempt's line, for its time so far, to `<destination>/ledger.jsonl`.

    Each call replaces the attempt's earlier line, so calling it after every batch never counts
    twice. `final` logs the total.
    """
    seconds = (datetime.now(timezone.utc) - settings.started_at).total_seconds()
    entry = ledger_entry(
        settings.job, str(flow_run.id or "local"), int(flow_run.run_count or 1), runtime_device(settings.device),
        seconds, budget,
    )
    append_ledger(settings.destination, settings.access, entry)
    if final:
        get_run_logger().info(
            "job %s: %.3f s on %s, about %.6f compute units", entry.job, entry.seconds, entry.device, entry.compute_units
        )
    return entry


class SpendRecorder:
    """Keeps the attempt's ledger line current while the flow runs, without a write per batch.

    A batch loaded from its checkpoint spends next to nothing, so only batches that did work
    count, and between writes at least `every` seconds pass: a task run per batch would cost a
    long job of small batches minutes of orchestration.
    """

    def __init__(self, settings: JobSettings, budget: ComputeBudget, every: float = LEDGER_EVERY_SECONDS) -> None:
        self.settings, self.budget, self.every = settings, budget, every
        self._written_at = float("-inf")

    def after_batch(self, outcome: BatchOutcome) -> None:
        """Write the line if the batch did work and the last write is old enough."""
        if outcome.from_checkpoint or time.monotonic() - self._written_at < self.every:
            return
        record_spend_task(self.settings, self.budget)
        self._written_at = time.monotonic()

    def final(self) -> LedgerEntry:
        """Write the attempt's final line and return it."""
        return record_spend_task(self.settings, self.budget, final=True)
