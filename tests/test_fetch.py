from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.fetch import fingerprint_chunks, plan_batches, plan_job
from tasks.models import ChunkFingerprint, ChunkRef


def fingerprint(index: int, size: int) -> ChunkFingerprint:
    return ChunkFingerprint(chunk_id=f"c{index}", uri=f"file:///c{index}", size=size, sha256="0" * 64)


def test_batches_close_at_the_chunk_count() -> None:
    """Ten chunks in batches of four give 4, 4, 2, in order."""
    batches = plan_batches([fingerprint(i, 1) for i in range(10)], batch_size=4, batch_bytes=10**9)
    assert [[c.chunk_id for c in b] for b in batches] == [["c0", "c1", "c2", "c3"], ["c4", "c5", "c6", "c7"], ["c8", "c9"]]


def test_batches_close_at_the_byte_limit_and_big_chunks_run_alone() -> None:
    """A batch stops before it would pass the byte limit; an oversized chunk is its own batch."""
    sizes = [40, 40, 40, 500, 10]
    batches = plan_batches([fingerprint(i, s) for i, s in enumerate(sizes)], batch_size=100, batch_bytes=100)
    assert [[c.size for c in b] for b in batches] == [[40, 40], [40], [500], [10]]


def test_fingerprints_hash_the_bytes_and_unreadable_chunks_fail_alone(tmp_path: Path) -> None:
    """Readable chunks get their sha256; a vanished one becomes a failure."""
    (tmp_path / "a").write_bytes(b"alpha")
    refs = [
        ChunkRef(chunk_id="a", uri=(tmp_path / "a").as_uri(), size=5),
        ChunkRef(chunk_id="gone", uri=(tmp_path / "gone").as_uri(), size=1),
    ]
    fingerprints, failures = fingerprint_chunks(refs)
    assert [f.sha256 for f in fingerprints] == [hashlib.sha256(b"alpha").hexdigest()]
    assert failures[0].chunk_id == "gone" and "disappeared" in failures[0].reason


def test_a_plan_counts_every_chunk_including_invalid_ones(sample_source: Path) -> None:
    """chunks_total includes chunks whose ids were rejected."""
    (sample_source / "bad\x02.txt").write_bytes(b"x")
    plan = plan_job([str(sample_source)], batch_size=3, batch_bytes=10**9)
    assert plan.chunks_total == sum(len(b) for b in plan.batches) + 1
    assert len(plan.failures) == 1
