"""One contract, every writable store: local disk, GCS (tests/gcs_fake.py) and Drive (fake Drive v3 server).

The GCS backend is gcp-storage-emulator behind a check of GCS's preconditions: the plain emulator
runs the same handlers but ignores preconditions, so it would test nothing this one does not.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.errors import MissingObjectError
from tasks.storage.local import LocalStore
from tasks.storage.shared_files import update_object
from tasks.storage.stores import ObjectStore, StorageAccess, delete_object, read_bytes, read_optional


@dataclass(frozen=True)
class Backend:
    """A store, and a probe whose answer changes whenever the store rewrites an object."""

    store: ObjectStore
    version: Callable[[str], object]


def local_store(stack: ExitStack, tmp_path: Path) -> Backend:
    store = LocalStore(tmp_path / "store")

    def version(key: str) -> object:
        status = store.path(key).stat()
        return status.st_ino, status.st_mtime_ns

    return Backend(store, version)


def gcs_store(stack: ExitStack, tmp_path: Path) -> Backend:
    from tasks.storage.gcs import GcsStore
    from tests.gcs_fake import BUCKET, gcs_fake

    stack.enter_context(pytest.MonkeyPatch.context()).setenv("STORAGE_EMULATOR_HOST", stack.enter_context(gcs_fake()))
    store = GcsStore(BUCKET, StorageAccess(), resumable_chunk=256 * 1024)
    return Backend(store, lambda key: store.bucket.get_blob(key).generation)


def drive_store(stack: ExitStack, tmp_path: Path) -> Backend:
    from google.auth.credentials import AnonymousCredentials

    from tasks.storage.drive import DriveStore
    from tests.drive_server import fake_drive

    drive = stack.enter_context(fake_drive(max_page_size=3))
    store = DriveStore(drive.root, AnonymousCredentials(), endpoint=drive.endpoint, chunk_size=256 * 1024)
    # Drive keeps no generation: count the uploads the fake received (a rewrite is an upload).
    return Backend(store, lambda key: sum(request.path.startswith("/upload/") for request in drive.requests))


@pytest.fixture(params=[local_store, gcs_store, drive_store], ids=["local", "gcs", "drive"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    factory: Callable[[ExitStack, Path], Backend] = request.param
    with ExitStack() as stack:
        yield factory(stack, tmp_path)


@pytest.fixture
def store(backend: Backend) -> ObjectStore:
    return backend.store


@pytest.fixture
def root() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"


def test_bytes_round_trip_and_stat(store: ObjectStore, root: str) -> None:
    """Bytes written under a unicode key read back, and stat gives the key, the size and (if known) the md5."""
    store.write_bytes(f"{root}/dir/ä b.txt", b"content")
    assert read_bytes(store, f"{root}/dir/ä b.txt") == b"content"
    info = store.stat(f"{root}/dir/ä b.txt")
    assert info is not None and (info.key, info.size) == (f"{root}/dir/ä b.txt", 7)
    if info.md5 is not None:
        assert info.md5 == hashlib.md5(b"content").hexdigest()


def test_absent_objects_read_as_missing(store: ObjectStore, root: str) -> None:
    """An absent key stats as None, reads as None through read_optional, and opens as MissingObjectError."""
    assert store.stat(f"{root}/nothing") is None
    assert read_optional(store, f"{root}/nothing") is None
    with pytest.raises(MissingObjectError):
        with store.open_read(f"{root}/nothing"):
            pass


def test_listing_is_recursive_sorted_and_bounded_by_the_prefix(store: ObjectStore, root: str) -> None:
    """A listing walks subfolders, sorts by key, and leaves out a sibling that merely shares the prefix."""
    for key in ["b/2.txt", "a.txt", "b/1.txt", "b/c/3.txt", "bb.txt"]:
        store.write_bytes(f"{root}/{key}", key.encode())
    assert [info.key for info in store.list(f"{root}/b")] == [f"{root}/b/1.txt", f"{root}/b/2.txt", f"{root}/b/c/3.txt"]
    assert [info.key for info in store.list(f"{root}/a.txt")] == [f"{root}/a.txt"]
    assert len(list(store.list(root))) == 5


def test_rewriting_replaces_and_the_same_bytes_change_nothing(backend: Backend, root: str) -> None:
    """Writing the bytes an object holds leaves it untouched (same version); other bytes replace it in place."""
    store, key = backend.store, f"{root}/x"
    store.write_bytes(key, b"one")
    first = backend.version(key)
    store.write_bytes(key, b"one")
    assert backend.version(key) == first, "writing the same bytes again rewrote the object"
    store.write_bytes(key, b"two, longer")
    assert backend.version(key) != first
    assert read_bytes(store, key) == b"two, longer"
    assert [info.key for info in store.list(root)] == [key]


def test_files_stream_up_and_down_intact(store: ObjectStore, root: str, tmp_path: Path) -> None:
    """A 3 MiB file goes up through write_file (chunked on remotes) and streams back with the same sha256."""
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    store.write_file(f"{root}/big.bin", path)
    with store.open_read(f"{root}/big.bin") as stream:
        digest = hashlib.sha256()
        while block := stream.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest()


def test_a_shared_file_update_applies_every_change_in_turn(store: ObjectStore, root: str) -> None:
    """`update_object` adds lines one by one, leaves the object alone when the change is already there."""
    key = f"{root}/ledger.jsonl"

    def adding(line: bytes) -> Callable[[bytes | None], bytes | None]:
        def change(content: bytes | None) -> bytes | None:
            lines = (content or b"").splitlines()
            return None if line in lines else b"".join(item + b"\n" for item in [*lines, line])
        return change

    for number in range(5):
        update_object(store, key, adding(b"entry %d" % number))
    update_object(store, key, adding(b"entry 3"))
    assert read_bytes(store, key).splitlines() == [b"entry %d" % number for number in range(5)]


def test_a_deleted_object_is_gone_and_deleting_it_again_changes_nothing(store: ObjectStore, root: str) -> None:
    """Delete removes one object and leaves its neighbours; an absent object deletes without error."""
    store.write_bytes(f"{root}/old/state.json", b"old")
    store.write_bytes(f"{root}/kept/state.json", b"kept")
    delete_object(store, f"{root}/old/state.json")
    delete_object(store, f"{root}/old/state.json")
    assert read_optional(store, f"{root}/old/state.json") is None
    assert [info.key for info in store.list(root)] == [f"{root}/kept/state.json"]
