"""Planning: list a job's items, read and hash those the fingerprint cache does not know, and batch them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.fingerprints import (
    FingerprintCache,
    cache_of,
    read_fingerprints,
    reuse_fingerprints,
    write_fingerprints,
)
from tasks.engine.item_attempts import attempt_item, io_thread_count, item_retry_policy
from tasks.engine.job_folder import job_folder
from tasks.engine.models import (
    ItemFailure,
    ItemFingerprint,
    ItemRef,
    JobPlan,
    JobSettings,
)
from tasks.engine.sources import list_sources, open_chunk
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient
from tasks.storage.stores import READ_BLOCK, StorageAccess


def fingerprint_chunk(ref: ItemRef, access: StorageAccess = StorageAccess()) -> ItemFingerprint:
    """Stream a chunk and return it with its sha256 and actual size."""
    digest, size = hashlib.sha256(), 0
    with open_chunk(ref.uri, access) as stream:
        while block := stream.read(READ_BLOCK):
            digest.update(block)
            size += len(block)
    version = ref.version if size == ref.size else None
    return ItemFingerprint(item_id=ref.item_id, uri=ref.uri, size=size, version=version, sha256=digest.hexdigest())


def fingerprint_chunks(
    refs: list[ItemRef], access: StorageAccess = StorageAccess()
) -> tuple[list[ItemFingerprint], list[ItemFailure]]:
    """Fingerprint chunks on every core; a chunk that cannot be read becomes a failure, in input order.

    Transient errors are retried per chunk (`item_retry_policy`), so one bad chunk never fails
    the plan.
    """
    policy = item_retry_policy()

    def attempt(ref: ItemRef) -> ItemFingerprint | ItemFailure:
        return attempt_item(ref.item_id, lambda: fingerprint_chunk(ref, access), policy)

    with ThreadPoolExecutor(io_thread_count()) as pool:
        outcomes = list(pool.map(attempt, refs))
    fingerprints = [item for item in outcomes if isinstance(item, ItemFingerprint)]
    failures = [item for item in outcomes if isinstance(item, ItemFailure)]
    return fingerprints, failures


def plan_batches(
    items: Iterable[ItemFingerprint], batch_size: int, batch_bytes: int
) -> list[list[ItemFingerprint]]:
    """Group items in order; a batch closes at `batch_size` items, `batch_bytes` bytes or a new group.

    Items of one group (`ItemRef.group`, a language say) are brought together first, in their
    order, so a batch never mixes groups; items without a group form one group.
    """
    batches: list[list[ItemFingerprint]] = []
    current: list[ItemFingerprint] = []
    current_bytes = 0
    for item in sorted(items, key=lambda item: item.group or ""):
        full = len(current) >= batch_size or current_bytes + item.size > batch_bytes
        if current and (full or item.group != current[-1].group):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += item.size
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
        items_total=len(refs) + len(invalid),
        items_read=len(refs) - len(known),
    )


def plan_job_with_cache(sources: list[str], batch_size: int, batch_bytes: int, settings: JobSettings,
                        refresh: bool) -> JobPlan:
    """`plan_job` with the job's fingerprint cache, read before and rewritten when it changed (ignored on refresh)."""
    folder = job_folder(settings)
    cache = FingerprintCache() if refresh else read_fingerprints(folder)
    plan = plan_job(sources, batch_size, batch_bytes, settings.access, cache)
    current = cache_of([chunk for batch in plan.batches for chunk in batch])
    if current != cache:
        write_fingerprints(folder, current)
    return plan


@task(
    name="plan-job",
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def plan_job_task(sources: list[str], batch_size: int, batch_bytes: int, settings: JobSettings, refresh: bool) -> JobPlan:
    """List the job's chunks and fingerprint those that changed since the last run."""
    return plan_job_with_cache(sources, batch_size, batch_bytes, settings, refresh)
