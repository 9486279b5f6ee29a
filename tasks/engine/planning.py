"""Planning: list a job's items, read and hash those the fingerprint cache does not know, and batch them."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.fingerprints import (
    FingerprintCache,
    cache_of,
    read_fingerprints,
    reuse_fingerprints,
    write_fingerprints,
)
from tasks.engine.item_hashes import fingerprint_chunks, take_ahead
from tasks.engine.job_folder import job_folder
from tasks.engine.models import (
    ItemFingerprint,
    JobPlan,
    JobSettings,
)
from tasks.engine.records import is_records_location, read_records
from tasks.engine.sources import describe_skipped, scan_sources
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient
from tasks.storage.stores import StorageAccess

logger = logging.getLogger("colabflow.plan")


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
    cache: FingerprintCache = FingerprintCache(), hashed_ahead: FingerprintCache = FingerprintCache(),
    follow_symlinks: bool = False,
) -> JobPlan:
    """List and validate every chunk, fingerprint those the cache does not know, then batch them.

    Chunks `hashed_ahead` in this run count as read, though the plan takes their fingerprints.
    Entries left out of a local source (tasks/storage/local_tree.py) go in `skipped`, logged once here.
    """
    listing = scan_sources(sources, access, follow_symlinks)
    refs, invalid = listing.refs, listing.failures
    if listing.skipped:
        logger.warning("%s; never read, the report lists them all", describe_skipped(listing.skipped, shown=20))
    known = reuse_fingerprints(refs, cache)
    ahead = reuse_fingerprints([ref for ref in refs if ref.uri not in known], hashed_ahead)
    fresh, unreadable = fingerprint_chunks([ref for ref in refs if ref.uri not in known and ref.uri not in ahead], access)
    by_uri = {**known, **ahead, **{chunk.uri: chunk for chunk in fresh}}
    fingerprints = [by_uri[ref.uri] for ref in refs if ref.uri in by_uri]
    return JobPlan(
        batches=plan_batches(fingerprints, batch_size, batch_bytes),
        failures=invalid + unreadable,
        items_total=len(refs) + len(invalid),
        items_read=len(refs) - len(known),
        skipped=listing.skipped,
    )


def plan_job_with_cache(sources: list[str], batch_size: int, batch_bytes: int, settings: JobSettings,
                        refresh: bool, follow_symlinks: bool = False) -> JobPlan:
    """`plan_job` with the job's fingerprint cache, read before and rewritten when it changed (ignored on refresh).

    Fingerprints hashed ahead of the plan in this process (`hash_ahead`) are used where the file is unchanged.
    """
    folder = job_folder(settings)
    cache = FingerprintCache() if refresh else read_fingerprints(folder)
    plan = plan_job(sources, batch_size, batch_bytes, settings.access, cache, take_ahead(), follow_symlinks)
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
def plan_job_task(sources: list[str], batch_size: int, batch_bytes: int, settings: JobSettings, refresh: bool,
                  follow_symlinks: bool = False) -> JobPlan:
    """List the job's chunks and fingerprint those that changed since the last run."""
    return plan_job_with_cache(sources, batch_size, batch_bytes, settings, refresh, follow_symlinks)


def plan_items(
    location: str, id_field: str, batch_size: int, batch_bytes: int, settings: JobSettings, refresh: bool,
    limit: int | None = None, follow_symlinks: bool = False,
) -> JobPlan:
    """A job's items, in batches: the records of a JSONL file, or the files of a folder; the first `limit` of them."""
    if is_records_location(location):
        records = read_records(location, id_field, settings.access)
        plan = JobPlan(batches=[records], failures=[], items_total=len(records), items_read=len(records))
    else:
        plan = plan_job_with_cache([location], batch_size, batch_bytes, settings, refresh, follow_symlinks)
    items = [item for batch in plan.batches for item in batch]
    if limit is not None:
        items = items[:limit]
    return plan.model_copy(update={
        "batches": plan_batches(items, batch_size, batch_bytes),
        "items_total": plan.items_total if limit is None else len(items),
    })


@task(
    name="plan-items",
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def plan_items_task(location: str, id_field: str, batch_size: int, batch_bytes: int, settings: JobSettings,
                    refresh: bool, limit: int | None, follow_symlinks: bool = False) -> JobPlan:
    """List and fingerprint a job's items (records or files); bad records are refused before any work."""
    return plan_items(location, id_field, batch_size, batch_bytes, settings, refresh, limit, follow_symlinks)
