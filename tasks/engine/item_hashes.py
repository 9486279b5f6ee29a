"""Reading items to learn their sha256 and size: the fingerprints that checkpoint keys are made of.

Local files are hashed in worker processes, one share per core (tasks/engine/cores.py); remote
items in threads, which wait on the network together. The command line can start this ahead of
the plan (`hash_ahead`), while Prefect is still being imported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import BinaryIO

from tasks.engine.cores import file_weight, map_on_cores, worth_spreading
from tasks.engine.fingerprints import FingerprintCache, cache_of
from tasks.engine.item_attempts import attempt_item, io_thread_count, item_retry_policy
from tasks.engine.models import ItemFailure, ItemFingerprint, ItemRef
from tasks.engine.sources import list_sources, open_chunk
from tasks.storage.locations import is_local
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import READ_BLOCK, StorageAccess

logger = logging.getLogger("colabflow.plan")


class HashingReader:
    """A reader that hashes what passes through it; rewinding to 0 restarts the hash."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.digest.update(block)
        self.size += len(block)
        return block

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) != (0, os.SEEK_SET):
            raise ValueError("a HashingReader can only rewind to the start")
        self.digest, self.size = hashlib.sha256(), 0
        return self.stream.seek(0)


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


class _HashingAhead:
    """Sources listed and hashed in the background, before the plan that needs them is made."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.cache = FingerprintCache()

    def start(self, sources: list[str], access: StorageAccess, follow_symlinks: bool) -> None:
        def work() -> None:
            try:
                refs, _ = list_sources(sources, access, follow_symlinks)
                fingerprints, _ = fingerprint_chunks(refs, access)
                self.cache = cache_of(fingerprints)
            except Exception:  # noqa: BLE001 - only a head start: the plan lists and reports for itself
                logger.debug("hashing ahead of the plan failed; the plan reads the sources itself", exc_info=True)

        self.thread = threading.Thread(target=work, name="colabflow-hash-ahead", daemon=True)
        self.thread.start()

    def take(self) -> FingerprintCache:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        cache, self.cache = self.cache, FingerprintCache()
        return cache


_AHEAD = _HashingAhead()


def hash_ahead(sources: list[str], access: StorageAccess = StorageAccess(), follow_symlinks: bool = False) -> None:
    """Start listing and hashing `sources` now, in the background, for a plan this process makes soon.

    The command line calls it before it imports Prefect, which takes seconds on one core. The
    plan takes these fingerprints as it takes the job's fingerprint cache (`take_ahead`): only
    for a file whose version, listed again, is unchanged. It lists as the plan does: a symlink the
    plan leaves out (`follow_symlinks` off) is never read here either.
    """
    _AHEAD.start(sources, access, follow_symlinks)


def take_ahead() -> FingerprintCache:
    """The fingerprints `hash_ahead` found (waiting for it to finish), once; empty if it was not started."""
    return _AHEAD.take()
