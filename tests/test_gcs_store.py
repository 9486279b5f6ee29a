"""GCS through gcp-storage-emulator (real HTTP), with faults injected by a proxy in front of it."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.errors import CorruptOutputError, MissingObjectError, RemoteUnavailableError, StorageRejectedError
from tasks.gcs import MULTIPART_LIMIT, GcsStore, gcs_place
from tasks.retries import RetryPolicy
from tasks.sources import list_sources, read_chunk
from tasks.stores import StorageAccess, read_bytes
from tests.fault_proxy import Fault, FaultProxy, fault_proxy
from tests.gcs_emulator import BUCKET, gcs_emulator


class RecordedSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with gcs_emulator() as url:
        yield url


@pytest.fixture
def proxy(emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with fault_proxy(emulator) as running:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.url)
        yield running


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
def store(proxy: FaultProxy, sleep: RecordedSleep) -> GcsStore:
    return GcsStore(BUCKET, StorageAccess(), RetryPolicy(attempts=4, sleep=sleep))


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def uploads(proxy: FaultProxy) -> list[str]:
    return [request.path for request in proxy.requests if "/upload/" in request.path and request.method == "POST"]


def test_objects_round_trip_with_hashes_and_sorted_listing(store: GcsStore, prefix: str) -> None:
    """Written bytes read back; stat gives size, md5 and the sha256 kept in metadata."""
    store.write_bytes(f"{prefix}/b/ünï code.txt", b"beta")
    store.write_bytes(f"{prefix}/a.txt", b"alpha")
    assert read_bytes(store, f"{prefix}/b/ünï code.txt") == b"beta"
    info = store.stat(f"{prefix}/a.txt")
    assert info is not None and info.size == 5
    assert (info.md5, info.sha256) == (hashlib.md5(b"alpha").hexdigest(), hashlib.sha256(b"alpha").hexdigest())
    assert [item.key for item in store.list(prefix)] == [f"{prefix}/a.txt", f"{prefix}/b/ünï code.txt"]
    assert [item.key for item in store.list(f"{prefix}/a.txt")] == [f"{prefix}/a.txt"]
    assert store.stat(f"{prefix}/absent") is None


def test_a_new_object_is_guarded_by_generation_zero_and_a_second_upload_is_a_no_op(
    store: GcsStore, proxy: FaultProxy, prefix: str
) -> None:
    """The first write carries ifGenerationMatch=0; the same bytes again upload nothing."""
    store.write_bytes(f"{prefix}/x", b"same")
    store.write_bytes(f"{prefix}/x", b"same")
    assert len(uploads(proxy)) == 1 and "ifGenerationMatch=0" in uploads(proxy)[0]
    store.write_bytes(f"{prefix}/x", b"changed")
    generation_guard = uploads(proxy)[1]
    assert "ifGenerationMatch=" in generation_guard and "ifGenerationMatch=0" not in generation_guard
    assert read_bytes(store, f"{prefix}/x") == b"changed"
    assert [item.key for item in store.list(prefix)] == [f"{prefix}/x"]


@pytest.mark.parametrize(("status", "headers", "expected_wait"), [(429, {"Retry-After": "7"}, 7.0), (503, {}, 1.0)])
def test_transient_answers_are_retried_with_the_wait_asked_for(
    store: GcsStore, proxy: FaultProxy, sleep: RecordedSleep, prefix: str,
    status: int, headers: dict[str, str], expected_wait: float,
) -> None:
    """429 honours Retry-After; 503 backs off; then the write lands."""
    proxy.add(Fault("POST", "/upload/", status, headers, b'{"error": {"code": %d, "message": "slow down"}}' % status))
    store.write_bytes(f"{prefix}/y", b"data")
    assert sleep.waits == [expected_wait]
    assert read_bytes(store, f"{prefix}/y") == b"data"


def test_retries_run_out_with_a_retryable_error(store: GcsStore, proxy: FaultProxy, prefix: str) -> None:
    """A remote that stays unavailable ends in RemoteUnavailableError, which Prefect retries later."""
    proxy.add(Fault("GET", "/o/", 503, times=10))
    with pytest.raises(RemoteUnavailableError, match="gave up after 4 attempts.*answered 503"):
        store.stat(f"{prefix}/z")


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (401, StorageRejectedError, "refused the credentials; check --gcp-credentials"),
        (403, StorageRejectedError, "grant the service account roles/storage.objectAdmin"),
        (404, MissingObjectError, "no such object, or bucket 'colabflow-test' does not exist"),
    ],
)
def test_refusals_fail_fast_naming_the_setting(
    store: GcsStore, proxy: FaultProxy, sleep: RecordedSleep, prefix: str,
    status: int, error: type[Exception], message: str,
) -> None:
    """401/403/404 are not retried, and say what to fix."""
    proxy.add(Fault("GET", "/o/", status, body=b'{"error": {"code": %d, "message": "no"}}' % status))
    with pytest.raises(error, match=message):
        with store.open_read(f"{prefix}/any"):
            pass
    assert sleep.waits == []


def test_a_dropped_connection_mid_upload_resumes_the_chunk_not_the_file(
    emulator: str, proxy: FaultProxy, prefix: str, tmp_path: Path
) -> None:
    """The second chunk's PUT is cut; the upload resends that chunk only and completes intact."""
    chunk = 4 * 1024 * 1024
    store = GcsStore(BUCKET, StorageAccess(), resumable_chunk=chunk)
    content = os.urandom(MULTIPART_LIMIT + chunk)
    path = tmp_path / "big.bin"
    path.write_bytes(content)
    proxy.add(Fault("PUT", "upload_id=", None, skip=1))
    store.write_file(f"{prefix}/big.bin", path)
    puts = [request for request in proxy.requests if request.method == "PUT"]
    sessions = [request for request in proxy.requests if request.method == "POST" and "uploadType=resumable" in request.path]
    ranges = [request.headers.get("content-range") for request in puts]
    assert len(sessions) == 1, "the upload was restarted"
    total = len(content)
    assert ranges == [f"bytes 0-{chunk - 1}/{total}", f"bytes {chunk}-{2 * chunk - 1}/{total}",
                      f"bytes {chunk}-{2 * chunk - 1}/{total}", f"bytes {2 * chunk}-{total - 1}/{total}"]
    assert any(request.faulted for request in puts)
    assert hashlib.sha256(read_bytes(store, f"{prefix}/big.bin")).digest() == hashlib.sha256(content).digest()


def test_a_lost_precondition_race_is_checked_again(store: GcsStore, proxy: FaultProxy, prefix: str) -> None:
    """412 (another writer got there first) re-reads the object and writes again."""
    proxy.add(Fault("POST", "/upload/", 412, body=b'{"error": {"code": 412, "message": "conditionNotMet"}}'))
    store.write_bytes(f"{prefix}/race", b"mine")
    assert read_bytes(store, f"{prefix}/race") == b"mine"
    assert len(uploads(proxy)) == 2


def test_an_md5_that_disagrees_after_upload_is_reported(store: GcsStore, proxy: FaultProxy, prefix: str) -> None:
    """GCS's md5 of what arrived must equal the local md5."""
    wrong = {"name": f"{prefix}/m", "bucket": BUCKET, "size": "4", "md5Hash": "AAAAAAAAAAAAAAAAAAAAAA==",
             "generation": "1", "metadata": {"sha256": "0" * 64}}
    proxy.add(Fault("POST", "/upload/", 200, body=json.dumps(wrong).encode()))
    with pytest.raises(CorruptOutputError, match="GCS reports md5 .* the local bytes have"):
        store.write_bytes(f"{prefix}/m", b"data")


def test_gs_sources_list_a_prefix_or_one_object_and_read_chunks(
    proxy: FaultProxy, prefix: str
) -> None:
    """gs://BUCKET/PREFIX lists chunks with ids relative to the prefix; each reads back."""
    place = gcs_place(f"gs://{BUCKET}/{prefix}", StorageAccess())
    store = place.writable("test")
    store.write_bytes(f"{prefix}/in/a.txt", b"a")
    store.write_bytes(f"{prefix}/in/sub/b.txt", b"bb")
    refs, failures = list_sources([f"gs://{BUCKET}/{prefix}/in"])
    assert failures == [] and [(ref.chunk_id, ref.size) for ref in refs] == [("a.txt", 1), ("sub/b.txt", 2)]
    assert read_chunk(refs[1].uri) == b"bb"
    single, _ = list_sources([f"gs://{BUCKET}/{prefix}/in/sub/b.txt"])
    assert [ref.chunk_id for ref in single] == ["b.txt"]
    store.write_bytes(f"{prefix}/odd/what?#100%.txt", b"odd")
    odd, _ = list_sources([f"gs://{BUCKET}/{prefix}/odd"])
    assert [ref.chunk_id for ref in odd] == ["what?#100%.txt"] and read_chunk(odd[0].uri) == b"odd"
