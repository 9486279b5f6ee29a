"""One contract, every writable store: local disk, GCS (emulator) and Drive (fake Drive v3 server)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tasks.errors import MissingObjectError
from tasks.stores import LocalStore, ObjectStore, StorageAccess, read_bytes, read_optional


def local_store(stack: ExitStack, tmp_path: Path) -> ObjectStore:
    return LocalStore(tmp_path / "store")


def gcs_store(stack: ExitStack, tmp_path: Path) -> ObjectStore:
    from tasks.gcs import GcsStore
    from tests.gcs_emulator import BUCKET, gcs_emulator

    stack.enter_context(pytest.MonkeyPatch.context()).setenv("STORAGE_EMULATOR_HOST", stack.enter_context(gcs_emulator()))
    return GcsStore(BUCKET, StorageAccess(), resumable_chunk=256 * 1024)


def drive_store(stack: ExitStack, tmp_path: Path) -> ObjectStore:
    from google.auth.credentials import AnonymousCredentials

    from tasks.drive import DriveStore
    from tests.drive_server import fake_drive

    drive = stack.enter_context(fake_drive(max_page_size=3))
    return DriveStore(drive.root, AnonymousCredentials(), endpoint=drive.endpoint, chunk_size=256 * 1024)


@pytest.fixture(params=[local_store, gcs_store, drive_store], ids=["local", "gcs", "drive"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    factory: Callable[[ExitStack, Path], ObjectStore] = request.param
    with ExitStack() as stack:
        yield factory(stack, tmp_path)


@pytest.fixture
def root() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"


def test_bytes_round_trip_and_stat(store: ObjectStore, root: str) -> None:
    store.write_bytes(f"{root}/dir/ä b.txt", b"content")
    assert read_bytes(store, f"{root}/dir/ä b.txt") == b"content"
    info = store.stat(f"{root}/dir/ä b.txt")
    assert info is not None and (info.key, info.size) == (f"{root}/dir/ä b.txt", 7)
    if info.md5 is not None:
        assert info.md5 == hashlib.md5(b"content").hexdigest()


def test_absent_objects_read_as_missing(store: ObjectStore, root: str) -> None:
    assert store.stat(f"{root}/nothing") is None
    assert read_optional(store, f"{root}/nothing") is None
    with pytest.raises(MissingObjectError):
        with store.open_read(f"{root}/nothing"):
            pass


def test_listing_is_recursive_sorted_and_bounded_by_the_prefix(store: ObjectStore, root: str) -> None:
    for key in ["b/2.txt", "a.txt", "b/1.txt", "b/c/3.txt", "bb.txt"]:
        store.write_bytes(f"{root}/{key}", key.encode())
    assert [info.key for info in store.list(f"{root}/b")] == [f"{root}/b/1.txt", f"{root}/b/2.txt", f"{root}/b/c/3.txt"]
    assert [info.key for info in store.list(f"{root}/a.txt")] == [f"{root}/a.txt"]
    assert len(list(store.list(root))) == 5


def test_rewriting_replaces_and_the_same_bytes_change_nothing(store: ObjectStore, root: str) -> None:
    store.write_bytes(f"{root}/x", b"one")
    store.write_bytes(f"{root}/x", b"one")
    store.write_bytes(f"{root}/x", b"two, longer")
    assert read_bytes(store, f"{root}/x") == b"two, longer"
    assert [info.key for info in store.list(root)] == [f"{root}/x"]


def test_files_stream_up_and_down_intact(store: ObjectStore, root: str, tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    store.write_file(f"{root}/big.bin", path)
    with store.open_read(f"{root}/big.bin") as stream:
        digest = hashlib.sha256()
        while block := stream.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest()
