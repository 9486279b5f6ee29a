"""Fetch stage: list a job's chunks, read and hash them, and group them into batches."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import ColabflowError, RemoteUnavailableError, is_retryable
from tasks.destinations import open_destination
from tasks.fingerprints import FingerprintCache, cache_of, read_fingerprints, reuse_fingerprints, write_fingerprints
from tasks.models import BatchSettings, ChunkFailure, ChunkFingerprint, ChunkRef, JobPlan
from tasks.retries import IO_RETRY_DELAYS, RetryPolicy, retry_if_transient
from tasks.sources import list_sources, open_chunk
from tasks.stores import READ_BLOCK, StorageAccess

T = TypeVar("T")

logger = logging.getLogger("colabflow.chunks")

CHUNK_ATTEMPTS = len(IO_RETRY_DELAYS)
CHUNK_RETRY_SECONDS_VARIABLE = "COLABFLOW_CHUNK_RETRY_SECONDS"


def worker_count() -> int:
    """Threads to use: one per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def io_thread_count() -> int:
    """Threads for reading, hashing and writing chunks: four per core, at least eight.

    Hashing and ISA-L release the GIL, and a thread waiting on fsync costs no CPU, so more threads
    than cores keep the cores busy while writes reach the disk (0.41 ms per 64 KiB file with one
    thread, 0.16 ms with eight, on the benchmark machine).
    """
    return max(8, 4 * worker_count())


def chunk_retry_policy() -> RetryPolicy:
    """How often one chunk is tried: `CHUNK_ATTEMPTS` times, backing off from the first I/O retry delay.

    `COLABFLOW_CHUNK_RETRY_SECONDS` sets the first wait (tests set it near 0); the waits double
    and never pass the second I/O retry delay, so a poison chunk holds its batch back seconds, not
    minutes.
    """
    first = float(os.environ.get(CHUNK_RETRY_SECONDS_VARIABLE, IO_RETRY_DELAYS[0]))
    return RetryPolicy(attempts=CHUNK_ATTEMPTS, base_delay=first, max_delay=max(first, IO_RETRY_DELAYS[1]))


def attempt_chunk(chunk_id: str, operation: Callable[[], T], policy: RetryPolicy) -> T | ChunkFailure:
    """Run one chunk's `operation`, retrying transient errors; a chunk that still fails becomes a ChunkFailure.

    Every error of one chunk stays that chunk's: the other chunks of its batch go on, and the
    batch task's own retries are left for failures of the whole batch. A remote that stays
    unavailable is not tried again here: its store's client has already run out its own retries.
    """
    errors: list[str] = []
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except Exception as error:  # noqa: BLE001 - any error of one chunk is that chunk's failure
            errors.append(describe_error(error))
            if isinstance(error, RemoteUnavailableError):
                return ChunkFailure(chunk_id=chunk_id, reason=failure_reason(chunk_id, errors, "its store's retries ran out"))
            if not is_retryable(error):
                break
            if attempt < policy.attempts:
                wait = policy.delay(attempt, None)
                logger.warning("chunk %r: %s; waiting %.1f s before attempt %d of %d",
                               chunk_id, errors[-1], wait, attempt + 1, policy.attempts)
                policy.sleep(wait)
    return ChunkFailure(chunk_id=chunk_id, reason=failure_reason(chunk_id, errors))


def describe_error(error: Exception) -> str:
    """An error as a reason: colabflow's messages as they are, anything else with its type."""
    text = str(error) or "no message"
    return text if isinstance(error, ColabflowError) else f"{type(error).__name__}: {text}"


def failure_reason(chunk_id: str, errors: list[str], single: str = "not retried, since a retry cannot fix this error") -> str:
    """Why a chunk failed: its last error, and how often and how consistently it failed."""
    last = errors[-1]
    if len(errors) == 1:
        history = single
    elif len(set(errors)) == 1:
        history = f"failed {len(errors)} times the same way"
    else:
        history = f"failed {len(errors)} times, first with: {errors[0]}"
    return f"chunk {chunk_id!r}: {last}; {history}; it is quarantined, and a rerun of the job tries it again"


def fingerprint_chunk(ref: ChunkRef, access: StorageAccess = StorageAccess()) -> ChunkFingerprint:
    """Stream a chunk and return it with its sha256 and actual size."""
    digest, size = hashlib.sha256(), 0
    with open_chunk(ref.uri, access) as stream:
        while block := stream.read(READ_BLOCK):
            digest.update(block)
            size += len(block)
    version = ref.version if size == ref.size else None
    return ChunkFingerprint(chunk_id=ref.chunk_id, uri=ref.uri, size=size, version=version, sha256=digest.hexdigest())


def fingerprint_chunks(
    refs: list[ChunkRef], access: StorageAccess = StorageAccess()
) -> tuple[list[ChunkFingerprint], list[ChunkFailure]]:
    """Fingerprint chunks on every core; a chunk that cannot be read becomes a failure, in input order.

    Transient errors are retried per chunk (`chunk_retry_policy`), so one bad chunk never fails
    the plan.
    """
    policy = chunk_retry_policy()

    def attempt(ref: ChunkRef) -> ChunkFingerprint | ChunkFailure:
        return attempt_chunk(ref.chunk_id, lambda: fingerprint_chunk(ref, access), policy)

    with ThreadPoolExecutor(io_thread_count()) as pool:
        outcomes = list(pool.map(attempt, refs))
    fingerprints = [item for item in outcomes if isinstance(item, ChunkFingerprint)]
    failures = [item for item in outcomes if isinstance(item, ChunkFailure)]
    return fingerprints, failures


def plan_batches(
    chunks: Iterable[ChunkFingerprint], batch_size: int, batch_bytes: int
) -> list[list[ChunkFingerprint]]:
    """Group chunks in order; a batch closes at `batch_size` chunks or `batch_bytes` bytes."""
    batches: list[list[ChunkFingerprint]] = []
    current: list[ChunkFingerprint] = []
    current_bytes = 0
    for chunk in chunks:
        if current and (len(current) >= batch_size or current_bytes + chunk.size > batch_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(chunk)
        current_bytes += chunk.size
    if current:
        batches.append(current)
    return batches


def plan_job(
    sources: list[str], batch_size: int, batch_bytes: int, access: StorageAccess = StorageAccess(),
    cache: FingerprintCache = FingerprintCache(),
) -> JobPlan:
    """List and validate every chunk, fingerprint those the cache does not know, then batch them."""
    refs, invalid = list_sources(sources, access)
    known = reuse_fingerprints(refs, cache)
    fresh, unreadable = fingerprint_chunks([ref for ref in refs if ref.uri not in known], access)
    by_uri = {**known, **{chunk.uri: chunk for chunk in fresh}}
    fingerprints = [by_uri[ref.uri] for ref in refs if ref.uri in by_uri]
    return JobPlan(
        batches=plan_batches(fingerprints, batch_size, batch_bytes),
        failures=invalid + unreadable,
        chunks_total=len(refs) + len(invalid),
        chunks_read=len(refs) - len(known),
    )


def plan_job_with_cache(sources: list[str], batch_size: int, batch_bytes: int, settings: BatchSettings,
                        refresh: bool) -> JobPlan:
    """`plan_job` with the job's fingerprint cache, read before and rewritten when it changed (ignored on refresh)."""
    destination = open_destination(settings.destination, settings.access)
    cache = FingerprintCache() if refresh else read_fingerprints(destination, settings.job)
    plan = plan_job(sources, batch_size, batch_bytes, settings.access, cache)
    current = cache_of([chunk for batch in plan.batches for chunk in batch])
    if current != cache:
        write_fingerprints(destination, settings.job, current)
    return plan


@task(
    name="plan-job",
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def plan_job_task(sources: list[str], batch_size: int, batch_bytes: int, settings: BatchSettings, refresh: bool) -> JobPlan:
    """List the job's chunks and fingerprint those that changed since the last run."""
    return plan_job_with_cache(sources, batch_size, batch_bytes, settings, refresh)
