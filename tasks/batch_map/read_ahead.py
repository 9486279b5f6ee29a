"""Items read on threads ahead of the batch that needs them, as a prefetching data loader does.

While the function works on one batch, the items of the next batches (`READ_AHEAD_BATCHES`,
named by the engine) are read and checked on I/O threads; a batch's own items not read yet are
read all at once, not one after another. Only the items of the batches named last are kept, so
memory holds at most the running batch and those ahead of it. Records of a JSONL file are already
in memory and are never queued. Reading ahead changes no commit: a batch's outputs and done
marker are written as before, in order, and a kill still costs at most the batch in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tasks.engine.item_attempts import attempt_item, io_thread_count
from tasks.engine.models import ItemFailure, ItemFingerprint
from tasks.storage.retries import RetryPolicy

Payload = dict[str, Any]
ReadItem = Callable[[ItemFingerprint], Payload]


def _key(item: ItemFingerprint) -> tuple[str, str]:
    return item.uri, item.sha256


class ItemReader:
    """Reads file items on threads; `ahead` queues coming batches, `read` returns a batch's payloads."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="colabflow-read-ahead")
        self._queued: dict[tuple[str, str], Future[Payload]] = {}
        self._lock = threading.Lock()

    def _queue(self, items: list[ItemFingerprint], read: ReadItem) -> None:
        for item in items:
            if item.content is None and _key(item) not in self._queued:
                self._queued[_key(item)] = self._pool.submit(read, item)

    def ahead(self, batches: list[list[ItemFingerprint]], read: ReadItem) -> None:
        """Keep (or start) reads of these batches' items; drop reads of any other item not taken yet."""
        wanted = [item for batch in batches for item in batch]
        keep = {_key(item) for item in wanted}
        with self._lock:
            for key in [key for key in self._queued if key not in keep]:
                self._queued.pop(key).cancel()
            self._queue(wanted, read)

    def read(self, batch: list[ItemFingerprint], read: ReadItem, policy: RetryPolicy) -> list[Payload | ItemFailure]:
        """Each item's payload, or its failure once `policy` is spent; a read queued ahead counts as the first try."""
        with self._lock:
            self._queue(batch, read)
            queued = [self._queued.pop(_key(item), None) for item in batch]
        return [attempt_item(item.item_id, _first_from(future, item, read), policy) for item, future in zip(batch, queued)]


def _first_from(future: Future[Payload] | None, item: ItemFingerprint, read: ReadItem) -> Callable[[], Payload]:
    """The queued read's result on the first call, a fresh read on each retry."""
    pending = [future] if future is not None else []

    def attempt() -> Payload:
        return pending.pop().result() if pending else read(item)

    return attempt


_reader: ItemReader | None = None
_reader_lock = threading.Lock()


def item_reader() -> ItemReader:
    """This process's reader, started on first use."""
    global _reader
    with _reader_lock:
        if _reader is None:
            _reader = ItemReader(io_thread_count())
        return _reader
