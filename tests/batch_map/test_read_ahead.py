"""Items read ahead on threads: a batch takes what was read for it, and nothing else is kept."""

from __future__ import annotations

import threading

from tasks.batch_map.read_ahead import ItemReader
from tasks.engine.models import ItemFailure, ItemFingerprint
from tasks.storage.retries import RetryPolicy
from tests.servers import wait_until

ONCE = RetryPolicy(attempts=1)


def item(name: str, content: dict[str, object] | None = None) -> ItemFingerprint:
    return ItemFingerprint(item_id=name, uri=f"/items/{name}", size=1, sha256="0" * 64, content=content)


class GatedReads:
    """Counts reads per item; a read waits until the test opens the gate."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}
        self.gate = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, fingerprint: ItemFingerprint) -> dict[str, object]:
        with self.lock:
            self.reads[fingerprint.item_id] = self.reads.get(fingerprint.item_id, 0) + 1
        assert self.gate.wait(10)
        return {"id": fingerprint.item_id}


def test_a_batch_read_ahead_is_read_once_and_in_parallel() -> None:
    """Four reads queued ahead all start before any ends (they wait on one gate), and the batch reuses them."""
    reads, reader = GatedReads(), ItemReader(threads=4)
    batch = [item(f"i{index}") for index in range(4)]
    reader.ahead([batch], reads)
    wait_until(lambda: len(reads.reads) == 4, 10, 0.01, "four reads to start together")
    reads.gate.set()
    assert reader.read(batch, reads, ONCE) == [{"id": f"i{index}"} for index in range(4)]
    assert reads.reads == {f"i{index}": 1 for index in range(4)}


def test_reads_of_batches_no_longer_coming_are_dropped() -> None:
    """Only the items of the batches named last are kept; records already in memory are never queued."""
    reads, reader = GatedReads(), ItemReader(threads=1)
    reader.ahead([[item("a"), item("b")], [item("c", {"id": "c"})]], reads)
    reader.ahead([[item("b")]], reads)
    assert set(reader._queued) == {("/items/b", "0" * 64)}
    reads.gate.set()


def test_a_failed_read_ahead_is_tried_again_by_its_batch() -> None:
    """The queued read counts as the first try; the retry reads again."""
    calls: list[str] = []

    def flaky(fingerprint: ItemFingerprint) -> dict[str, object]:
        calls.append(fingerprint.item_id)
        if len(calls) == 1:
            raise ConnectionError("reset by peer")
        return {"id": fingerprint.item_id}

    reader = ItemReader(threads=1)
    reader.ahead([[item("a")]], flaky)
    [payload] = reader.read([item("a")], flaky, RetryPolicy(attempts=2, base_delay=0, max_delay=0))
    assert payload == {"id": "a"} and calls == ["a", "a"]
    [failure] = ItemReader(threads=1).read([item("b")], lambda _: (_ for _ in ()).throw(OSError("gone")), ONCE)
    assert isinstance(failure, ItemFailure) and failure.item_id == "b" and "gone" in failure.reason
