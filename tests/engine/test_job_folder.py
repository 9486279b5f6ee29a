"""A job folder: prepared before any work, written atomically, refused with the reason when it cannot be."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.engine.job_folder import open_job_folder
from tasks.errors import (
    DestinationError,
    InvalidParameterError,
)
from tasks.storage.local import LocalStore


def test_prepare_removes_only_stale_temporaries(tmp_path: Path) -> None:
    """A `.partial-` file a killed run left an hour ago goes; one being written now stays."""
    folder = tmp_path / "job" / "chunks" / "deep"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".partial-old", folder / ".partial-new"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_hours_ago = datetime.now(timezone.utc).timestamp() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    open_job_folder(str(tmp_path), "job").prepare()
    assert not stale.exists()
    assert fresh.exists()


def test_the_write_check_really_writes_every_time(tmp_path: Path) -> None:
    """prepare() rewrites its check file each run, so a folder that became read-only is caught."""
    folder = open_job_folder(str(tmp_path), "job")
    folder.prepare()
    check = tmp_path / "job" / ".colabflow-write-check"
    first = check.read_bytes()
    folder.prepare()
    assert check.read_bytes() != first


def test_writing_the_same_bytes_leaves_the_file_alone(tmp_path: Path) -> None:
    """Same bytes: same inode, no rewrite; other bytes: replaced."""
    store = LocalStore(tmp_path)
    store.write_bytes("a/b", b"one")
    inode = (tmp_path / "a" / "b").stat().st_ino
    store.write_bytes("a/b", b"one")
    assert (tmp_path / "a" / "b").stat().st_ino == inode
    store.write_bytes("a/b", b"two")
    assert (tmp_path / "a" / "b").read_bytes() == b"two"
    assert (tmp_path / "a" / "b").stat().st_ino != inode


def run_as_nobody(function: object, *arguments: object) -> str:
    """Run `function(*arguments)` in a forked child as uid 65534; return its error text."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        message = "no error"
        try:
            os.setgid(65534)
            os.setuid(65534)
            function(*arguments)  # type: ignore[operator]
        except Exception as error:  # noqa: BLE001 - the child reports any error to the parent
            message = f"{type(error).__name__}: {error}"
        os.write(writer, message.encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text


def test_a_destination_without_write_permission_fails_before_any_work(tmp_path: Path) -> None:
    """prepare() on a directory the user cannot write names it and says what to do."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    if os.geteuid() == 0:
        message = run_as_nobody(lambda: open_job_folder(str(locked), "job").prepare())
    else:
        locked.chmod(0o555)
        try:
            open_job_folder(str(locked), "job").prepare()
            message = "no error"
        except DestinationError as error:
            message = f"DestinationError: {error}"
    assert message.startswith("DestinationError: cannot write")
    assert "no permission to write there" in message
    assert str(locked) in message


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, so that a full disk is real."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_named_and_leaves_no_partial_file(tiny_disk: Path) -> None:
    """ENOSPC becomes a clear error, and the temporary file is removed."""
    with pytest.raises(DestinationError, match="the disk is full; free space"):
        LocalStore(tiny_disk).write_bytes("big.gz", os.urandom(1024 * 1024))
    assert list(tiny_disk.iterdir()) == []


def test_read_only_and_unknown_destinations_are_refused_with_the_scheme_named() -> None:
    """A GitHub repository is a source only, and an unknown scheme is named."""
    with pytest.raises(InvalidParameterError, match="github://owner/repo@main/out.* cannot be written"):
        open_job_folder("github://owner/repo@main/out", "job")
    with pytest.raises(InvalidParameterError, match="cannot be written"):
        open_job_folder("s3://bucket/prefix", "job")
