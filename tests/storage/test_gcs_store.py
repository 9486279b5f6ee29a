"""GCS through gcp-storage-emulator (real HTTP), with faults injected by a proxy in front of it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tasks.engine.sources import list_sources, read_chunk
from tasks.errors import (
    CorruptOutputError,
    InvalidParameterError,
    MissingObjectError,
    RemoteUnavailableError,
    StorageRejectedError,
)
from tasks.storage.gcs import MULTIPART_LIMIT, GcsStore, gcs_place, storage_client
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import StorageAccess, read_bytes
from tests.fault_proxy import Fault, FaultProxy, fault_proxy
from tests.gcs_emulator import BUCKET, gcs_emulator
from tests.servers import free_port, wait_until


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
def sleep_log() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
def store(proxy: FaultProxy, sleep_log: RecordedSleep) -> GcsStore:
    return GcsStore(BUCKET, StorageAccess(), RetryPolicy(attempts=4, sleep=sleep_log))


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
    store: GcsStore, proxy: FaultProxy, sleep_log: RecordedSleep, prefix: str,
    status: int, headers: dict[str, str], expected_wait: float,
) -> None:
    """429 honours Retry-After; 503 backs off; then the write lands."""
    proxy.add(Fault("POST", "/upload/", status, headers, b'{"error": {"code": %d, "message": "slow down"}}' % status))
    store.write_bytes(f"{prefix}/y", b"data")
    assert sleep_log.waits == [expected_wait]
    assert read_bytes(store, f"{prefix}/y") == b"data"


def test_503_with_retry_after_is_waited_out_before_the_next_request(
    proxy: FaultProxy, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After a 503 asking Retry-After: 1, the retried upload reaches the server at least 1 s later, and it is logged."""
    store = GcsStore(BUCKET, StorageAccess(), RetryPolicy(attempts=3, base_delay=0.01))
    proxy.add(Fault("POST", "/upload/", 503, {"Retry-After": "1"}, b'{"error": {"code": 503, "message": "busy"}}'))
    with caplog.at_level(logging.WARNING, logger="colabflow.gcs"):
        store.write_bytes(f"{prefix}/w", b"data")
    faulted, retried = [request for request in proxy.requests if "/upload/" in request.path]
    assert faulted.faulted and not retried.faulted
    assert retried.arrived - faulted.arrived >= 1.0
    assert "GCS answered 503; waiting 1.0 s before attempt 2 of 3" in caplog.text
    assert read_bytes(store, f"{prefix}/w") == b"data"


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
    store: GcsStore, proxy: FaultProxy, sleep_log: RecordedSleep, prefix: str,
    status: int, error: type[Exception], message: str,
) -> None:
    """401/403/404 are not retried, and say what to fix."""
    proxy.add(Fault("GET", "/o/", status, body=b'{"error": {"code": %d, "message": "no"}}' % status))
    with pytest.raises(error, match=message):
        with store.open_read(f"{prefix}/any"):
            pass
    assert sleep_log.waits == []


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


def test_a_refused_bucket_metadata_read_stops_nothing(store: GcsStore, proxy: FaultProxy, prefix: str) -> None:
    """Without storage.buckets.get (objectAdmin lacks it), write, stat, list and read still work."""
    forbidden = b'{"error": {"code": 403, "message": "does not have storage.buckets.get access"}}'
    proxy.add(Fault("GET", rf"^/storage/v1/b/{BUCKET}\?", 403, body=forbidden, times=100))
    store.write_bytes(f"{prefix}/p", b"plain")
    assert store.stat(f"{prefix}/p") is not None and [info.key for info in store.list(prefix)] == [f"{prefix}/p"]
    assert read_bytes(store, f"{prefix}/p") == b"plain"
    # google-cloud-storage itself looks the bucket up in the background (for tracing); it was refused too.
    wait_until(lambda: any(request.faulted for request in proxy.requests), 30, what="the refused bucket lookup")


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
    assert failures == [] and [(ref.item_id, ref.size) for ref in refs] == [("a.txt", 1), ("sub/b.txt", 2)]
    assert read_chunk(refs[1].uri) == b"bb"
    single, _ = list_sources([f"gs://{BUCKET}/{prefix}/in/sub/b.txt"])
    assert [ref.item_id for ref in single] == ["b.txt"]
    store.write_bytes(f"{prefix}/odd/what?#100%.txt", b"odd")
    odd, _ = list_sources([f"gs://{BUCKET}/{prefix}/odd"])
    assert [ref.item_id for ref in odd] == ["what?#100%.txt"] and read_chunk(odd[0].uri) == b"odd"


ACCESS_TOKEN = "ya29.colabflow-test-access-token"


def service_account_key(token_uri: str) -> dict[str, str]:
    """A service-account key file's fields, with a freshly generated RSA key and a local token endpoint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "type": "service_account", "project_id": "colabflow-test", "private_key_id": "test-key-1",
        "private_key": pem.decode(), "public_key": public.decode(), "client_id": "1",
        "client_email": "compressor@colabflow-test.iam.gserviceaccount.com", "token_uri": token_uri,
    }


def test_a_named_gcp_credentials_block_signs_in_and_its_token_reaches_gcs(
    prefect_api: str, proxy: FaultProxy, httpserver: HTTPServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--gcp-credentials NAME: the saved block's key signs the token request, and GCS sees that bearer token."""
    from google.auth import jwt
    from prefect_gcp import GcpCredentials

    # google-auth also asks iamcredentials.googleapis.com for the account's allowed regions; route
    # HTTPS to a closed local port so that lookup fails here instead of reaching the internet.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    httpserver.expect_request("/token", method="POST").respond_with_json(
        {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
    key = service_account_key(httpserver.url_for("/token"))
    name = f"gcp-{uuid.uuid4().hex[:8]}"
    GcpCredentials(service_account_info={k: v for k, v in key.items() if k != "public_key"}).save(name)
    place = gcs_place(f"gs://{BUCKET}/{prefix}", StorageAccess(gcp_credentials=name))
    place.writable("test").write_bytes(place.key("signed.txt"), b"signed")
    assert read_bytes(place.store, place.key("signed.txt")) == b"signed"
    token_requests = [request for request, _ in httpserver.log if request.path == "/token"]
    assert token_requests
    for request in token_requests:
        assert request.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        claims = jwt.decode(request.form["assertion"], certs={"test-key-1": key["public_key"]})
        assert claims["iss"] == key["client_email"]
    assert proxy.requests and {request.headers.get("authorization") for request in proxy.requests} == {
        f"Bearer {ACCESS_TOKEN}"}


def test_a_gcp_credentials_block_that_does_not_exist_is_named(prefect_api: str, proxy: FaultProxy) -> None:
    """A --gcp-credentials name with no saved block fails before any request, naming the block and the fix."""
    with pytest.raises(InvalidParameterError) as caught:
        storage_client(StorageAccess(gcp_credentials="no-such-gcp-block"))
    assert "GcpCredentials block 'no-such-gcp-block' was not found; create it" in str(caught.value)
    assert "drop --gcp-credentials" in str(caught.value)
    assert proxy.requests == []
