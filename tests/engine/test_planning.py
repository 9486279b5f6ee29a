from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from tasks.engine.item_attempts import (
    ITEM_ATTEMPTS,
    ITEM_RETRY_SECONDS_VARIABLE,
    attempt_item,
    item_retry_policy,
)
from tasks.engine.models import ItemFailure, ItemFingerprint, ItemRef
from tasks.engine.item_hashes import fingerprint_chunks
from tasks.engine.planning import plan_batches, plan_job
from tasks.errors import RemoteUnavailableError
from tasks.storage.retries import RetryPolicy


def fingerprint(index: int, size: int) -> ItemFingerprint:
    return ItemFingerprint(item_id=f"c{index}", uri=f"file:///c{index}", size=size, sha256="0" * 64)


def test_batches_never_mix_groups_and_keep_each_group_in_order() -> None:
    """Items of languages fr/en interleaved: each batch holds one group, in the items' order."""
    items = [fingerprint(index, 1).model_copy(update={"group": "fr" if index % 2 else "en"}) for index in range(7)]
    batches = plan_batches(items, batch_size=2, batch_bytes=10**9)
    assert [[item.item_id for item in batch] for batch in batches] == [["c0", "c2"], ["c4", "c6"], ["c1", "c3"], ["c5"]]


def test_batches_close_at_the_chunk_count() -> None:
    """Ten chunks in batches of four give 4, 4, 2, in order."""
    batches = plan_batches([fingerprint(i, 1) for i in range(10)], batch_size=4, batch_bytes=10**9)
    assert [[c.item_id for c in b] for b in batches] == [["c0", "c1", "c2", "c3"], ["c4", "c5", "c6", "c7"], ["c8", "c9"]]


def test_batches_close_at_the_byte_limit_and_big_chunks_run_alone() -> None:
    """A batch stops before it would pass the byte limit; an oversized chunk is its own batch."""
    sizes = [40, 40, 40, 500, 10]
    batches = plan_batches([fingerprint(i, s) for i, s in enumerate(sizes)], batch_size=100, batch_bytes=100)
    assert [[c.size for c in b] for b in batches] == [[40, 40], [40], [500], [10]]


def test_fingerprints_hash_the_bytes_and_unreadable_chunks_fail_alone(tmp_path: Path) -> None:
    """Readable chunks get their sha256; a vanished one becomes a failure."""
    (tmp_path / "a").write_bytes(b"alpha")
    refs = [
        ItemRef(item_id="a", uri=(tmp_path / "a").as_uri(), size=5),
        ItemRef(item_id="gone", uri=(tmp_path / "gone").as_uri(), size=1),
    ]
    fingerprints, failures = fingerprint_chunks(refs)
    assert [f.sha256 for f in fingerprints] == [hashlib.sha256(b"alpha").hexdigest()]
    assert failures[0].item_id == "gone" and "disappeared" in failures[0].reason


def test_a_plan_counts_every_chunk_including_invalid_ones(sample_source: Path) -> None:
    """items_total includes items whose ids were rejected."""
    (sample_source / "bad\x02.txt").write_bytes(b"x")
    plan = plan_job([str(sample_source)], batch_size=3, batch_bytes=10**9)
    assert plan.items_total == sum(len(b) for b in plan.batches) + 1
    assert len(plan.failures) == 1


class FailingThen:
    """An operation that raises the given errors in turn, then returns 'done'; it counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def recorded_policy(waits: list[float]) -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.5, max_delay=10.0, sleep=waits.append)


def test_a_transient_chunk_error_is_retried_with_backoff() -> None:
    """Two EIOs then success: the chunk's result, after waits of 0.5 and 1 s."""
    waits: list[float] = []
    operation = FailingThen(OSError(errno.EIO, "Input/output error"), OSError(errno.EIO, "Input/output error"))
    assert attempt_item("c", operation, recorded_policy(waits)) == "done"
    assert (operation.calls, waits) == (3, [0.5, 1.0])


def test_a_chunk_that_keeps_failing_says_how_often() -> None:
    """The same transient error on every attempt becomes one failure naming the chunk, the error and the count."""
    waits: list[float] = []
    operation = FailingThen(*[OSError(errno.EIO, "Input/output error")] * 3)
    failure = attempt_item("src/a.py", operation, recorded_policy(waits))
    assert isinstance(failure, ItemFailure) and failure.item_id == "src/a.py"
    assert failure.reason.startswith("item 'src/a.py': OSError: [Errno 5] Input/output error; failed 3 times the same way;")
    assert "a rerun of the job tries it again" in failure.reason


def test_a_remote_whose_client_gave_up_is_not_tried_again() -> None:
    """A store client has already retried a 503 with backoff: the chunk fails at once, saying so."""
    waits: list[float] = []
    operation = FailingThen(RemoteUnavailableError("GitHub answered 503 for blob b; gave up after 6 attempts"))
    failure = attempt_item("src/a.py", operation, recorded_policy(waits))
    assert isinstance(failure, ItemFailure) and (operation.calls, waits) == (1, [])
    assert failure.reason.startswith("item 'src/a.py': GitHub answered 503 for blob b; gave up after 6 attempts; "
                                     "its store's retries ran out;")


def test_a_non_transient_chunk_error_fails_at_once() -> None:
    """A RuntimeError or a name too long is tried once; its type is named when it is not colabflow's."""
    for error, shown in [(RuntimeError("boom"), "RuntimeError: boom"),
                         (OSError(errno.ENAMETOOLONG, "File name too long"), "OSError: [Errno 36] File name too long")]:
        waits: list[float] = []
        operation = FailingThen(error)
        failure = attempt_item("c", operation, recorded_policy(waits))
        assert isinstance(failure, ItemFailure) and (operation.calls, waits) == (1, [])
        assert failure.reason.startswith(f"item 'c': {shown}; not retried")


def test_differing_errors_name_the_first_and_the_last() -> None:
    """A chunk that fails differently each time says so instead of claiming the same failure."""
    operation = FailingThen(OSError(errno.EIO, "Input/output error"), RuntimeError("then this"))
    failure = attempt_item("c", operation, recorded_policy([]))
    assert isinstance(failure, ItemFailure)
    assert failure.reason.startswith("item 'c': RuntimeError: then this; failed 2 times, first with: OSError: [Errno 5]")


def test_the_chunk_retry_wait_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """COLABFLOW_ITEM_RETRY_SECONDS sets the first wait; the attempts stay ITEM_ATTEMPTS."""
    monkeypatch.setenv(ITEM_RETRY_SECONDS_VARIABLE, "0.25")
    policy = item_retry_policy()
    assert (policy.attempts, policy.delay(1, None), policy.delay(2, None)) == (ITEM_ATTEMPTS, 0.25, 0.5)


def test_a_directory_given_as_a_chunk_fails_alone_at_once(tmp_path: Path) -> None:
    """EISDIR is bad input: one attempt, a failure for that chunk, the other chunk fingerprinted."""
    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "folder").mkdir()
    refs = [ItemRef(item_id="folder", uri=(tmp_path / "folder").as_uri(), size=0),
            ItemRef(item_id="a", uri=(tmp_path / "a").as_uri(), size=5)]
    fingerprints, failures = fingerprint_chunks(refs)
    assert [f.item_id for f in fingerprints] == ["a"]
    assert failures[0].item_id == "folder" and "IsADirectoryError" in failures[0].reason
    assert "not retried" in failures[0].reason
