"""One item's work, attempted on its own: transient errors retried, the rest a failure of that item.

Every error of one item stays that item's, so the other items of its batch go on; the batch
task's own retries are left for failures of the whole batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

from tasks.engine.cores import core_count
from tasks.engine.models import ItemFailure
from tasks.errors import ColabflowError, RemoteUnavailableError, is_retryable
from tasks.storage.retries import IO_RETRY_DELAYS, RetryPolicy

T = TypeVar("T")

logger = logging.getLogger("colabflow.chunks")

ITEM_ATTEMPTS = len(IO_RETRY_DELAYS)
ITEM_RETRY_SECONDS_VARIABLE = "COLABFLOW_ITEM_RETRY_SECONDS"


def io_thread_count() -> int:
    """Threads for reading, hashing and writing items: four per core, at least eight.

    Hashing and ISA-L release the GIL, and a thread waiting on fsync costs no CPU, so more threads
    than cores keep the cores busy while writes reach the disk (0.41 ms per 64 KiB file with one
    thread, 0.16 ms with eight, on the benchmark machine).
    """
    return max(8, 4 * core_count())


def item_retry_policy() -> RetryPolicy:
    """How often one item is tried: `ITEM_ATTEMPTS` times, backing off from the first I/O retry delay.

    `COLABFLOW_ITEM_RETRY_SECONDS` sets the first wait (tests set it near 0); the waits double
    and never pass the second I/O retry delay, so a poison item holds its batch back seconds, not
    minutes.
    """
    first = float(os.environ.get(ITEM_RETRY_SECONDS_VARIABLE, IO_RETRY_DELAYS[0]))
    return RetryPolicy(attempts=ITEM_ATTEMPTS, base_delay=first, max_delay=max(first, IO_RETRY_DELAYS[1]))


def attempt_item(item_id: str, operation: Callable[[], T], policy: RetryPolicy) -> T | ItemFailure:
    """Run one item's `operation`, retrying transient errors; an item that still fails becomes an ItemFailure.

    Every error of one item stays that item's: the other items of its batch go on, and the
    batch task's own retries are left for failures of the whole batch. A remote that stays
    unavailable is not tried again here: its store's client has already run out its own retries.
    """
    errors: list[str] = []
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except Exception as error:  # noqa: BLE001 - any error of one item is that chunk's failure
            errors.append(describe_error(error))
            if isinstance(error, RemoteUnavailableError):
                return ItemFailure(item_id=item_id, reason=failure_reason(item_id, errors, "its store's retries ran out"))
            if not is_retryable(error):
                break
            if attempt < policy.attempts:
                wait = policy.delay(attempt, None)
                logger.warning("item %r: %s; waiting %.1f s before attempt %d of %d",
                               item_id, errors[-1], wait, attempt + 1, policy.attempts)
                policy.sleep(wait)
    return ItemFailure(item_id=item_id, reason=failure_reason(item_id, errors))


def describe_error(error: Exception) -> str:
    """An error as a reason: colabflow's messages as they are, anything else with its type."""
    text = str(error) or "no message"
    return text if isinstance(error, ColabflowError) else f"{type(error).__name__}: {text}"


def failure_reason(item_id: str, errors: list[str], single: str = "not retried, since a retry cannot fix this error") -> str:
    """Why an item failed: its last error, and how often and how consistently it failed."""
    last = errors[-1]
    if len(errors) == 1:
        history = single
    elif len(set(errors)) == 1:
        history = f"failed {len(errors)} times the same way"
    else:
        history = f"failed {len(errors)} times, first with: {errors[0]}"
    return f"item {item_id!r}: {last}; {history}; it is quarantined, and a rerun of the job tries it again"
