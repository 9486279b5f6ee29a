"""Shared files under concurrent writers: the local folder lock, and the GCS generation precondition."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.engine.ledger import LedgerEntry, append_ledger, read_ledger
from tasks.storage.gcs import GcsStore
from tasks.storage.local import LocalStore
from tasks.storage.retries import RetryPolicy
from tasks.storage.shared_files import update_object
from tasks.storage.stores import StorageAccess, read_bytes
from tests.fault_proxy import Fault, FaultProxy, fault_proxy
from tests.gcs_emulator import BUCKET, gcs_emulator

ENTRIES_PER_WRITER = 100


def entry(writer: str, number: int) -> LedgerEntry:
    return LedgerEntry(job=f"job-{writer}", flow_run_id=f"run-{number}", attempt=1, device="cpu", gpu_class="cpu",
                       seconds=1.0, compute_units=0.0, recorded_at=datetime.now(timezone.utc))


def append_many(destination: str, writer: str) -> None:
    for number in range(ENTRIES_PER_WRITER):
        append_ledger(destination, StorageAccess(), entry(writer, number))


def test_two_processes_appending_to_one_local_ledger_lose_nothing(tmp_path: Path) -> None:
    """Two processes write 100 ledger entries each to the same file: all 200 are there."""
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=append_many, args=(str(tmp_path), name)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    entries = read_ledger(str(tmp_path), StorageAccess())
    assert len(entries) == 2 * ENTRIES_PER_WRITER
    assert len({(item.job, item.flow_run_id) for item in entries}) == 2 * ENTRIES_PER_WRITER


def test_a_local_update_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    """A change that returns None leaves the file's inode as it was."""
    store = LocalStore(tmp_path)
    store.write_bytes("shared", b"one\n")
    inode = (tmp_path / "shared").stat().st_ino
    update_object(store, "shared", lambda content: None)
    assert (tmp_path / "shared").stat().st_ino == inode


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with gcs_emulator() as emulator, fault_proxy(emulator) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        yield proxy


def test_a_gcs_update_carries_the_generation_it_read_and_a_lost_race_reads_again(proxy: FaultProxy) -> None:
    """The upload names the generation read; on 412 the object is read again and the change reapplied to it."""
    store = GcsStore(BUCKET, StorageAccess(), policy=RetryPolicy(sleep=lambda seconds: None))
    key = f"shared-{uuid.uuid4().hex[:8]}/ledger.jsonl"
    store.write_bytes(key, b"theirs 1\n")
    generation = store.bucket.get_blob(key).generation
    # The emulator ignores preconditions, so the proxy answers 412 as GCS would to the upload that
    # follows the other writer's (the first upload after this point, which it lets through).
    proxy.add(Fault("POST", "/upload/", 412, body=b'{"error": {"code": 412, "message": "conditionNotMet"}}', skip=1))
    seen: list[bytes | None] = []

    def add_mine(content: bytes | None) -> bytes | None:
        seen.append(content)
        if len(seen) == 1:
            store.write_bytes(key, (content or b"") + b"theirs 2\n")
        return None if b"mine\n" in (content or b"") else (content or b"") + b"mine\n"

    update_object(store, key, add_mine)
    assert read_bytes(store, key) == b"theirs 1\ntheirs 2\nmine\n"
    assert seen == [b"theirs 1\n", b"theirs 1\ntheirs 2\n"]
    uploads = [request for request in proxy.requests if request.method == "POST" and "/upload/" in request.path]
    refused, accepted = uploads[-2:]
    assert (refused.faulted, accepted.faulted) == (True, False)
    assert f"ifGenerationMatch={generation}" in refused.path
    assert "ifGenerationMatch=" in accepted.path and f"ifGenerationMatch={generation}" not in accepted.path
