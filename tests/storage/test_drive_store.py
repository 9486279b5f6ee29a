"""DriveStore over real HTTP against the fake Drive server (tests/drive_server.py)."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient.discovery import build

from tasks.errors import (
    CorruptOutputError,
    InvalidParameterError,
    MissingObjectError,
    RemoteUnavailableError,
    StorageRejectedError,
)
from tasks.storage.drive import DriveStore, drive_place
from tasks.storage.drive_api import drive_credentials
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import ObjectInfo, StorageAccess, read_bytes
from tests.drive_server import FakeDrive, fake_drive

CHUNK = 256 * 1024
UPLOAD = "/upload/drive/v3/files"
FILES = "/drive/v3/files"


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    with fake_drive() as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_store(drive: FakeDrive, sleeps: list[float], folder_id: str | None = None,
               job_root: str | None = None) -> DriveStore:
    return DriveStore(folder_id or drive.root, AnonymousCredentials(), endpoint=drive.endpoint, chunk_size=CHUNK,
                      policy=RetryPolicy(attempts=4, sleep=sleeps.append), job_root=job_root)


@pytest.fixture
def store(drive: FakeDrive, sleeps: list[float]) -> DriveStore:
    return make_store(drive, sleeps)


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def creations(drive: FakeDrive) -> int:
    """Requests that create or replace file content."""
    return len(drive.made("POST", UPLOAD)) + len(drive.made("PATCH", UPLOAD)) + len(drive.made("POST", FILES))


def test_nested_unicode_keys_round_trip(store: DriveStore, drive: FakeDrive) -> None:
    """Bytes written under nested, non-ASCII keys read back, and the folders exist once each."""
    store.write_bytes("job/chunks/données brutes/résumé été.txt.gz", b"gz bytes")
    store.write_bytes("job/manifest.jsonl", b"{}\n")
    assert read_bytes(store, "job/chunks/données brutes/résumé été.txt.gz") == b"gz bytes"
    assert drive.file_at("job/chunks/données brutes/résumé été.txt.gz").content == b"gz bytes"
    assert [info.key for info in store.list("job")] == [
        "job/chunks/données brutes/résumé été.txt.gz", "job/manifest.jsonl"]


def test_list_and_stat_report_size_and_hashes(store: DriveStore) -> None:
    """Listing yields size, md5 and the sha256 kept in appProperties; a single file lists as itself."""
    data = b"payload"
    store.write_bytes("job/a.bin", data)
    expected = ObjectInfo("job/a.bin", len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    assert list(store.list("job/a.bin")) == [expected]
    assert list(store.list("")) == [expected]
    assert store.stat("job/a.bin") == expected
    assert store.stat("job/missing.bin") is None
    assert store.stat("nowhere/a.bin") is None
    assert list(store.list("nowhere")) == []


def test_listing_follows_pages(sleeps: list[float]) -> None:
    """More entries than one page holds are all listed, in key order."""
    with fake_drive(max_page_size=3) as drive:
        folder = drive.add_folder("many", drive.root)
        for index in random.Random(2).sample(range(10), 10):
            drive.add_file(f"f{index}.bin", folder, b"x" * index)
        keys = [info.key for info in make_store(drive, sleeps).list("many")]
        assert keys == [f"many/f{index}.bin" for index in range(10)]
        assert len([r for r in drive.made("GET", FILES) if "pageToken" in r.query]) == 3


def test_same_bytes_again_change_nothing(store: DriveStore, drive: FakeDrive) -> None:
    """A second write of the same bytes makes no request that creates or replaces a file."""
    store.write_bytes("job/a.gz", b"same")
    before = creations(drive)
    make_store(drive, []).write_bytes("job/a.gz", b"same")
    assert creations(drive) == before
    assert len(drive.children(drive.file_at("job").id, "a.gz")) == 1


def test_changed_bytes_update_the_file_in_place(store: DriveStore, drive: FakeDrive) -> None:
    """Other bytes under the same key replace the content of the same file."""
    store.write_bytes("job/a.gz", b"old")
    file_id = drive.file_at("job/a.gz").id
    store.write_bytes("job/a.gz", b"new")
    assert drive.file_at("job/a.gz").id == file_id
    assert drive.file_at("job/a.gz").content == b"new"
    assert drive.file_at("job/a.gz").app_properties["colabflow_sha256"] == hashlib.sha256(b"new").hexdigest()


def test_files_carry_their_job_and_a_drive_search_finds_them(drive: FakeDrive, sleeps: list[float]) -> None:
    """Below gdrive://ROOT/jobs, colabflow_job is the job folder's name, found by an appProperties query."""
    destination = make_store(drive, sleeps, job_root="jobs")
    destination.write_bytes("jobs/myjob/chunks/texts/chunks/a.txt.gz", b"member")
    destination.write_bytes("jobs/myjob/manifest.jsonl", b"{}\n")
    destination.write_bytes("jobs/other/chunks/b.txt.gz", b"other")
    destination.write_bytes("jobs/ledger.jsonl", b"{}\n")
    destination.write_bytes("jobs/.colabflow/batch-sizes.json", b"{}")
    make_store(drive, sleeps, job_root="jobs/myjob/.checkpoints").write_bytes("jobs/myjob/.checkpoints/batch-1", b"{}")
    client = build("drive", "v3", credentials=AnonymousCredentials(), static_discovery=True,
                   client_options={"api_endpoint": f"{drive.endpoint}/drive/v3/"})
    found = client.files().list(q="appProperties has { key='colabflow_job' and value='myjob' } and trashed = false",
                                fields="files(name)").execute()
    assert sorted(entry["name"] for entry in found["files"]) == ["a.txt.gz", "batch-1", "manifest.jsonl"]
    assert drive.file_at("jobs/other/chunks/b.txt.gz").app_properties["colabflow_job"] == "other"
    assert "colabflow_job" not in drive.file_at("jobs/ledger.jsonl").app_properties
    assert "colabflow_job" not in drive.file_at("jobs/.colabflow/batch-sizes.json").app_properties


def test_empty_file_round_trips(store: DriveStore) -> None:
    """An empty object is written and read back as empty."""
    store.write_bytes("job/empty.txt", b"")
    assert read_bytes(store, "job/empty.txt") == b""


def test_dropped_chunk_resumes_where_drive_stopped(store: DriveStore, drive: FakeDrive, sleeps: list[float],
                                                   tmp_path: Path) -> None:
    """A connection reset inside the third chunk resumes after a status query, not from byte 0."""
    data = random_bytes(4 * CHUNK + 1000)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    drive.drop("PUT", UPLOAD, after=100_000, skip=2)
    store.write_file("job/big.bin", path)
    assert drive.file_at("job/big.bin").content == data
    chunks = [r.headers["content-range"] for r in drive.made("PUT", UPLOAD)]
    assert f"bytes */{len(data)}" in chunks
    assert [c for c in chunks if c.startswith("bytes 0-")] == [f"bytes 0-{CHUNK - 1}/{len(data)}"]
    assert len(drive.made("POST", UPLOAD, uploadType="resumable")) == 1
    assert len(drive.children(drive.file_at("job").id, "big.bin")) == 1
    assert len(sleeps) == 1


@pytest.mark.parametrize(("method", "reset", "old"), [
    ("POST", False, None), ("PUT", True, None), ("PATCH", True, b"old"),
], ids=["session-start-closed", "commit-reset", "update-reset"])
def test_an_answer_lost_after_drive_stored_the_file_makes_no_second_file(
    store: DriveStore, drive: FakeDrive, method: str, reset: bool, old: bytes | None
) -> None:
    """Drive carries out the upload, the answer never arrives; the write resends and one file holds the bytes."""
    if old is not None:
        store.write_bytes("job/a.gz", old)
    else:
        store.write_bytes("job/first.gz", b"makes the folder")
    drive.lose_response(method, UPLOAD, reset=reset)
    store.write_bytes("job/a.gz", b"new")
    assert not [fault for fault in drive.faults if fault.times], "the fault never fired"
    assert len(drive.children(drive.file_at("job").id, "a.gz")) == 1
    assert drive.file_at("job/a.gz").content == b"new"
    assert drive.file_at("job/a.gz").app_properties["colabflow_sha256"] == hashlib.sha256(b"new").hexdigest()


def test_changed_large_file_is_updated_through_a_resumable_session(store: DriveStore, drive: FakeDrive) -> None:
    """New bytes for a large file replace its content in place, chunk by chunk."""
    store.write_bytes("job/big.bin", random_bytes(2 * CHUNK + 1, seed=1))
    file_id = drive.file_at("job/big.bin").id
    changed = random_bytes(2 * CHUNK + 1, seed=2)
    store.write_bytes("job/big.bin", changed)
    assert drive.file_at("job/big.bin").id == file_id
    assert drive.file_at("job/big.bin").content == changed
    assert len(drive.made("PATCH", f"{UPLOAD}/{file_id}", uploadType="resumable")) == 1


def test_large_file_downloads_in_chunks(store: DriveStore, drive: FakeDrive) -> None:
    """A file larger than a chunk is read with range requests and comes back whole."""
    data = random_bytes(3 * CHUNK + 5)
    store.write_bytes("job/big.bin", data)
    with store.open_read("job/big.bin") as stream:
        assert stream.read() == data
    assert len(drive.made("GET", FILES, alt="media")) == 4


def test_429_waits_as_long_as_retry_after_says(store: DriveStore, drive: FakeDrive, sleeps: list[float]) -> None:
    """A 429 with Retry-After: 7 waits 7 s once, then the write succeeds."""
    drive.fail("GET", FILES, 429, retry_after="7")
    store.write_bytes("job/a.gz", b"x")
    assert sleeps == [7.0]
    assert drive.file_at("job/a.gz").content == b"x"


def test_503_is_retried_with_backoff(store: DriveStore, drive: FakeDrive, sleeps: list[float]) -> None:
    """Two 503 answers to an upload are retried with growing waits, and one file results."""
    drive.fail("POST", UPLOAD, 503, times=2)
    store.write_bytes("job/a.gz", b"x")
    assert sleeps == [1.0, 2.0]
    assert len(drive.children(drive.file_at("job").id, "a.gz")) == 1


def test_503_waits_as_long_as_retry_after_says(drive: FakeDrive, caplog: pytest.LogCaptureFixture) -> None:
    """A 503 with Retry-After: 1 on an upload chunk: Drive sees the next request at least 1 s later."""
    store = DriveStore(drive.root, AnonymousCredentials(), endpoint=drive.endpoint, chunk_size=CHUNK,
                       policy=RetryPolicy(attempts=3))
    drive.fail("PUT", UPLOAD, 503, retry_after="1")
    with caplog.at_level(logging.WARNING, logger="colabflow.drive"):
        store.write_bytes("job/a.gz", b"x")
    failed, retried = drive.made("PUT", UPLOAD)[:2]
    assert retried.at - failed.at >= 1.0
    assert "Drive answered 503" in caplog.text and "waiting 1.0 s before attempt 2 of 3" in caplog.text
    assert drive.file_at("job/a.gz").content == b"x"


def test_every_request_asks_for_shared_drives(store: DriveStore, drive: FakeDrive) -> None:
    """Each files.* request says supportsAllDrives=true, and each files.list includeItemsFromAllDrives=true."""
    store.write_bytes("job/deep/a.gz", b"small")
    store.write_bytes("job/deep/a.gz", b"changed")
    store.write_bytes("job/big.bin", random_bytes(2 * CHUNK + 1))
    with store.open_read("job/big.bin") as stream:
        stream.read()
    assert [info.key for info in store.list("job")] == ["job/big.bin", "job/deep/a.gz"]
    ours = [r for r in drive.requests if r.path.startswith((FILES, UPLOAD)) and "upload_id" not in r.query]
    assert {(r.method, r.path.startswith(UPLOAD)) for r in ours} == {
        ("GET", False), ("POST", False), ("POST", True), ("PATCH", True)}
    assert [r for r in ours if r.query.get("supportsAllDrives") != "true"] == []
    lists = [r for r in ours if r.method == "GET" and r.path == FILES]
    assert lists and [r for r in lists if r.query.get("includeItemsFromAllDrives") != "true"] == []


def test_rate_limit_403_is_retried(store: DriveStore, drive: FakeDrive, sleeps: list[float]) -> None:
    """A 403 with reason userRateLimitExceeded is transient, not a refusal."""
    drive.fail("GET", FILES, 403, reason="userRateLimitExceeded")
    store.write_bytes("job/a.gz", b"x")
    assert sleeps == [1.0]


def test_retries_run_out(store: DriveStore, drive: FakeDrive, sleeps: list[float]) -> None:
    """A remote that keeps answering 503 ends in RemoteUnavailableError after the policy's attempts."""
    drive.fail("GET", FILES, 503, times=10)
    with pytest.raises(RemoteUnavailableError, match="gave up after 4 attempts: open gdrive://.*503"):
        store.stat("job/a.gz")
    assert len(sleeps) == 3


@pytest.mark.parametrize(("status", "reason", "error", "message"), [
    (401, "authError", StorageRejectedError, "credentials were refused.*DriveFolder block"),
    (403, "storageQuotaExceeded", StorageRejectedError, "quota.*free space.*shared drive"),
    (403, "insufficientPermissions", StorageRejectedError, "share the folder with it as Editor"),
    (404, "notFound", MissingObjectError, "no such file or folder"),
])
def test_refusals_fail_fast_and_say_what_to_do(store: DriveStore, drive: FakeDrive, sleeps: list[float],
                                               status: int, reason: str, error: type[Exception],
                                               message: str) -> None:
    """401, 403 and 404 on an upload are not retried, and the message says what to do."""
    store.write_bytes("job/first.gz", b"ok")
    drive.fail("POST", UPLOAD, status, reason=reason)
    with pytest.raises(error, match=message):
        store.write_bytes("job/a.gz", b"x")
    assert sleeps == []


def test_missing_root_folder_is_named(drive: FakeDrive, sleeps: list[float]) -> None:
    """A folder id Drive does not know fails with that id and the sharing advice."""
    with pytest.raises(MissingObjectError, match="Drive folder 'nope' was not found.*share the folder"):
        list(make_store(drive, sleeps, folder_id="nope").list(""))
    assert sleeps == []


def test_a_file_id_is_no_root_folder(drive: FakeDrive, sleeps: list[float]) -> None:
    """A location whose id names a file, not a folder, is a parameter error."""
    file_id = drive.add_file("a.bin", drive.root, b"x")
    with pytest.raises(InvalidParameterError, match="is a file or a folder in the trash"):
        make_store(drive, sleeps, folder_id=file_id).stat("a")


def test_google_docs_are_skipped_with_a_warning(store: DriveStore, drive: FakeDrive,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A Google Docs file is neither listed nor readable, and the skip is logged."""
    store.write_bytes("job/a.bin", b"x")
    drive.add_document("notes", drive.file_at("job").id)
    with caplog.at_level(logging.WARNING, logger="colabflow.drive"):
        assert [info.key for info in store.list("job")] == ["job/a.bin"]
        assert store.stat("job/notes") is None
    assert "skipping job/notes: a Google Docs/Sheets/Slides file" in caplog.text
    with pytest.raises(MissingObjectError, match="gdrive://.*/job/notes does not exist"):
        store.open_read("job/notes")


def test_wrong_md5_after_upload_is_detected(store: DriveStore, drive: FakeDrive) -> None:
    """An md5 from Drive that differs from the local bytes raises CorruptOutputError."""
    drive.wrong_md5 = 1
    with pytest.raises(CorruptOutputError, match="md5 0{32} for gdrive://.*/job/a.gz"):
        store.write_bytes("job/a.gz", b"x")


def test_parallel_writers_make_each_folder_once(store: DriveStore, drive: FakeDrive) -> None:
    """Eight threads writing below the same new folders create each folder once."""
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            store.write_bytes(f"job/chunks/deep/part-{index}.gz", str(index).encode())
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(drive.children(drive.root, "job")) == 1
    assert len(drive.children(drive.file_at("job").id, "chunks")) == 1
    assert len(list(store.list("job"))) == 8


def test_missing_object_raises(store: DriveStore) -> None:
    """Reading a key that is not there raises MissingObjectError with its URI."""
    with pytest.raises(MissingObjectError, match="/job/none.gz does not exist"):
        store.open_read("job/none.gz")


def test_bad_keys_and_locations_are_refused(store: DriveStore) -> None:
    """Keys with '..' or empty segments, and locations without a folder id, are parameter errors."""
    with pytest.raises(InvalidParameterError, match="no empty, '.' or '..' segment"):
        store.write_bytes("job/../a", b"x")
    with pytest.raises(InvalidParameterError, match="not a gdrive://FOLDER_ID/PATH location"):
        drive_place("gdrive:///path", StorageAccess())
    with pytest.raises(InvalidParameterError, match="multiple of 256 KiB"):
        DriveStore("id", chunk_size=1000)


def test_place_splits_folder_and_path() -> None:
    """gdrive://FOLDER_ID/PATH gives a store rooted at FOLDER_ID and PATH inside it."""
    place = drive_place("gdrive://AbC-123_x/out/run 1/", StorageAccess())
    assert place.store.location == "gdrive://AbC-123_x"
    assert place.path == "out/run 1"
    assert place.uri(place.key("job")) == "gdrive://AbC-123_x/out/run 1/job"


def test_without_credentials_the_message_says_how_to_log_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Application Default Credentials gives a StorageRejectedError with the ways to log in."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    with pytest.raises(StorageRejectedError, match="authenticate_user.*--drive NAME"):
        drive_credentials()
