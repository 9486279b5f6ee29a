"""Running a job's batches, for every kind: task units of several batches, each batch committed alone.

A batch is what a crash may lose. Its outputs go to the job folder first, then its done marker
(tasks/engine/checkpoints.py), so a killed task unit that runs again loads its committed
batches and redoes only the one that was in flight. A batch that fails as a whole is retried
when a retry may help; then the items already in the job folder are kept (salvage) and only
the others fail. A batch whose result holds failures is not committed, so a rerun tries its
failed items again.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

from tasks.engine.checkpoints import batch_checkpoint_key, commit_batch, read_commit
from tasks.engine.item_attempts import attempt_item, describe_error, io_thread_count
from tasks.engine.kinds import BatchKind, batch_kind
from tasks.engine.models import (
    BatchOutcome,
    BatchResult,
    ItemFailure,
    ItemFingerprint,
    ItemOutput,
    JobSettings,
)
from tasks.engine.telemetry import batch_telemetry, record_batch_telemetry
from tasks.errors import is_retryable
from tasks.gpu.readings import read_device_telemetry
from tasks.storage.retries import IO_RETRY_DELAYS, RetryPolicy

MAX_TASK_RUNS = 64
BATCH_RETRY_DELAYS = tuple(IO_RETRY_DELAYS)


def task_units(batch_count: int, max_task_runs: int = MAX_TASK_RUNS) -> list[range]:
    """Consecutive batch indices per task run, so a job has at most `max_task_runs` of them."""
    per_unit = max(1, math.ceil(batch_count / max_task_runs))
    return [range(start, min(start + per_unit, batch_count)) for start in range(0, batch_count, per_unit)]


def _without_gpu_modules(name: str) -> ModuleType:
    raise ImportError(f"{name} is not read for a job that runs on the CPU")


def record_telemetry(kind: BatchKind, settings: JobSettings, batch_index: int, result: BatchResult, seconds: float) -> None:
    """Append the device reading after a batch to `<job>/telemetry.jsonl` and emit its event.

    The batch's figures count the items it did, not those already in the job folder. A CPU job
    reads the CPU host without importing torch, which would cost it seconds.
    """
    found = set(result.found_at_destination)
    figures = kind.batch_figures([output for output in result.outputs if output.item_id not in found])
    reading = read_device_telemetry() if settings.device != "cpu" else read_device_telemetry(_without_gpu_modules)
    telemetry = batch_telemetry(
        reading, settings.job, batch_index, figures.items, figures.bytes_in, figures.bytes_out, seconds
    )
    record_batch_telemetry(settings.destination, settings.access, telemetry)


def do_batch(kind: BatchKind, batch: list[ItemFingerprint], settings: JobSettings, batch_index: int, key: str) -> BatchResult:
    """Run the kind's batch, record its telemetry and, when no item failed, commit it."""
    started = time.perf_counter()
    result = kind.run_batch(batch, settings)
    record_telemetry(kind, settings, batch_index, result, time.perf_counter() - started)
    if not result.failures:
        commit_batch(settings, key, result)
    return result


def salvage_batch(kind: BatchKind, batch: list[ItemFingerprint], settings: JobSettings, error: str) -> BatchResult:
    """After a batch failed for good, keep the items already in the job folder; only the rest fail.

    Those written in this run count as done, older ones as found at the destination.
    """
    once = RetryPolicy(attempts=1)

    def check(item: ItemFingerprint) -> ItemOutput | None | ItemFailure:
        return attempt_item(item.item_id, lambda: kind.find_finished(item, settings), once)

    with ThreadPoolExecutor(min(io_thread_count(), len(batch))) as pool:
        found = list(pool.map(check, batch))
    outputs = [item for item in found if isinstance(item, ItemOutput)]
    return BatchResult(
        outputs=outputs,
        failures=[
            ItemFailure(item_id=item.item_id, reason=f"item {item.item_id!r}: its batch failed: {error}")
            for item, outcome in zip(batch, found) if not isinstance(outcome, ItemOutput)
        ],
        found_at_destination=[output.item_id for output in outputs if output.created_at < settings.started_at],
    )


def run_batch(
    batch: list[ItemFingerprint], settings: JobSettings, batch_index: int, refresh: bool,
    delays: tuple[float, ...] = BATCH_RETRY_DELAYS,
) -> BatchOutcome:
    """One commit unit: loaded from its done marker unless `refresh`, else run, retried and salvaged."""
    started = time.perf_counter()
    item_ids = [item.item_id for item in batch]
    key = batch_checkpoint_key(batch, settings)
    committed = None if refresh else read_commit(settings, key)
    if committed is not None:
        return BatchOutcome(item_ids=item_ids, result=committed, from_checkpoint=True, seconds=time.perf_counter() - started)
    kind = batch_kind(settings.kind)
    attempt = 0
    while True:
        try:
            result = do_batch(kind, batch, settings, batch_index, key)
            return BatchOutcome(item_ids=item_ids, result=result, seconds=time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - a batch's error is its outcome; salvage keeps what finished
            if attempt == len(delays) or not is_retryable(error):
                message = describe_error(error)
                salvaged = salvage_batch(kind, batch, settings, message)
                return BatchOutcome(item_ids=item_ids, result=salvaged, error=message, seconds=time.perf_counter() - started)
        time.sleep(delays[attempt])
        attempt += 1
