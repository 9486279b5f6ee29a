"""Planning: list a job's items, read and hash those the fingerprint cache does not know, and batch them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.compression.models import BatchSettings
from tasks.engine.fingerprints import (
    FingerprintCache,
    cache_of,
    read_fingerprints,
    reuse_fingerprints,
    write_fingerprints,
)
from tasks.engine.item_attempts import (
    attempt_chunk,
    chunk_retry_policy,
    io_thread_count,
)
from tasks.engine.job_folder import open_destination
from tasks.engine.models import ChunkFailure, ChunkFingerprint, ChunkRef, JobPlan
from tasks.engine.sources import list_sources, open_chunk
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient
from tasks.storage.stores import READ_BLOCK, StorageAccess


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
