"""Reading items to learn their sha256 and size: the fingerprints that checkpoint keys are made of.

Local files are hashed in worker processes, one share per core (tasks/engine/cores.py); remote
items in threads, which wait on the network together.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from tasks.engine.cores import file_weight, map_on_cores, worth_spreading
from tasks.engine.item_attempts import attempt_item, io_thread_count, item_retry_policy
from tasks.engine.models import ItemFailure, ItemFingerprint, ItemRef
from tasks.engine.sources import open_chunk
from tasks.storage.locations import is_local
from tasks.storage.retries import RetryPolicy
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


def fingerprint_each(access: StorageAccess, policy: RetryPolicy, refs: list[ItemRef]) -> list[ItemFingerprint | ItemFailure]:
    """Fingerprint chunks one after another, each retried on its own: a core's share of them."""
    return [attempt_item(ref.item_id, lambda: fingerprint_chunk(ref, access), policy) for ref in refs]


def fingerprint_chunks(
    refs: list[ItemRef], access: StorageAccess = StorageAccess()
) -> tuple[list[ItemFingerprint], list[ItemFailure]]:
    """Fingerprint chunks on every core; a chunk that cannot be read becomes a failure, in input order.

    Transient errors are retried per chunk (`item_retry_policy`), so one bad chunk never fails
    the plan.
    """
    policy = item_retry_policy()
    if worth_spreading(len(refs)) and all(is_local(ref.uri) for ref in refs):
        outcomes = map_on_cores(partial(fingerprint_each, access, policy), refs, file_weight)
    else:
        with ThreadPoolExecutor(io_thread_count()) as pool:
            outcomes = list(pool.map(lambda ref: fingerprint_each(access, policy, [ref])[0], refs))
    fingerprints = [item for item in outcomes if isinstance(item, ItemFingerprint)]
    failures = [item for item in outcomes if isinstance(item, ItemFailure)]
    return fingerprints, failures
