"""Shared files under concurrent writers: the ledger on every backend, the local lock, GCS's precondition."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from blocks.drive import DriveFolder
from tasks.engine.ledger import LedgerEntry, append_ledger, read_ledger
from tasks.storage.gcs import GcsStore
from tasks.storage.local import LocalStore
from tasks.storage.retries import RetryPolicy
from tasks.storage.shared_files import update_object
from tasks.storage.stores import StorageAccess, read_bytes
from tests.drive_server import FakeDrive, fake_drive
from tests.fault_proxy import FaultProxy, fault_proxy
from tests.gcs_fake import BUCKET, gcs_fake

ENTRIES_PER_WRITER = 200


def entry(writer: str, number: int) -> LedgerEntry:
    return LedgerEntry(job=f"job-{writer}", flow_run_id=f"run-{number}", attempt=1, device="cpu", gpu_class="cpu",
                       seconds=1.0, compute_units=0.0, recorded_at=datetime.now(timezone.utc))


def append_many(destination: str, access: StorageAccess, writer: str) -> None:
    for number in range(ENTRIES_PER_WRITER):
        append_ledger(destination, access, entry(writer, number))


@pytest.fixture
def drive_ledger(prefect_api: str) -> Iterator[tuple[str, StorageAccess, FakeDrive]]:
    """A destination `jobs` on the fake Drive, reached through a saved DriveFolder block."""
    with fake_drive() as drive:
        drive.add_folder("jobs", drive.root)
        block = f"fake-drive-{uuid.uuid4().hex[:8]}"
        DriveFolder(api_endpoint=drive.endpoint).save(block)
        yield f"gdrive://{drive.root}/jobs", StorageAccess(drive=block), drive


@pytest.fixture(params=["local", "gcs", "drive"])
def ledger_place(request: pytest.FixtureRequest, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, StorageAccess]]:
    """A destination on local disk, on the GCS fake that enforces preconditions, or on the fake Drive."""
    if request.param == "local":
        yield str(tmp_path), StorageAccess()
    elif request.param == "gcs":
        with gcs_fake() as url:
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
            yield f"gs://{BUCKET}/jobs", StorageAccess()
    else:
        destination, access, _ = request.getfixturevalue("drive_ledger")
        yield destination, access


def test_two_processes_appending_to_one_ledger_lose_nothing(ledger_place: tuple[str, StorageAccess]) -> None:
    """Two processes write 200 ledger entries each to the same destination at once: all 400 are there."""
    destination, access = ledger_place
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=append_many, args=(destination, access, name)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
    assert [writer.exitcode for writer in writers] == [0, 0]
    entries = read_ledger(destination, access)
    assert len({(item.job, item.flow_run_id) for item in entries}) == len(entries) == 2 * ENTRIES_PER_WRITER


def test_on_drive_a_process_writes_its_own_segment_and_an_old_ledger_file_still_counts(
    drive_ledger: tuple[str, StorageAccess, FakeDrive],
) -> None:
    """Drive: appends go to this process's own segment; readers merge it with ledger.jsonl, a key's later line wins."""
    destination, access, drive = drive_ledger
    first, other = entry("old", 0), entry("old", 1)
    old_file = b"".join(item.model_dump_json().encode() + b"\n" for item in (first, other))
    drive.add_file("ledger.jsonl", drive.file_at("jobs").id, old_file)
    new, again = entry("new", 0), first.model_copy(update={"seconds": 9.0, "recorded_at": datetime.now(timezone.utc)})
    append_ledger(destination, access, new)
    append_ledger(destination, access, again)
    assert read_ledger(destination, access) == [again, other, new]
    assert drive.file_at("jobs/ledger.jsonl").content == old_file
    segments = drive.file_at("jobs/.colabflow/ledger").id
    [segment] = [item for item in drive.files.values() if segments in item.parents]
    assert segment.content is not None and segment.content.count(b"\n") == 2


def test_a_local_update_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    """A change that returns None leaves the file's inode as it was."""
    store = LocalStore(tmp_path)
    store.write_bytes("shared", b"one\n")
    inode = (tmp_path / "shared").stat().st_ino
    update_object(store, "shared", lambda content: None)
    assert (tmp_path / "shared").stat().st_ino == inode


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The GCS fake behind a proxy that records each request."""
    with gcs_fake() as fake, fault_proxy(fake) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        yield proxy


def test_a_gcs_update_carries_the_generation_it_read_and_a_lost_race_reads_again(proxy: FaultProxy) -> None:
    """The upload names the generation read; after another writer's upload GCS refuses it (412), so the
    object is read again and the change applied to what that writer left."""
    store = GcsStore(BUCKET, StorageAccess(), policy=RetryPolicy(sleep=lambda seconds: None))
    key = f"shared-{uuid.uuid4().hex[:8]}/ledger.jsonl"
    store.write_bytes(key, b"theirs 1\n")
    generations = [store.bucket.get_blob(key).generation]
    seen: list[bytes | None] = []

    def add_mine(content: bytes | None) -> bytes | None:
        seen.append(content)
        if len(seen) == 1:
            store.write_bytes(key, (content or b"") + b"theirs 2\n")
            generations.append(store.bucket.get_blob(key).generation)
        return None if b"mine\n" in (content or b"") else (content or b"") + b"mine\n"

    update_object(store, key, add_mine)
    assert read_bytes(store, key) == b"theirs 1\ntheirs 2\nmine\n"
    assert seen == [b"theirs 1\n", b"theirs 1\ntheirs 2\n"]
    uploads = [request.path for request in proxy.requests if request.method == "POST" and "/upload/" in request.path]
    refused, accepted = uploads[-2:]
    assert f"ifGenerationMatch={generations[0]}" in refused
    assert f"ifGenerationMatch={generations[1]}" in accepted
