from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.compression.models import Recipe
from tasks.engine.job_folder import open_destination
from tasks.errors import (
    CorruptOutputError,
    DestinationError,
    InvalidChunkError,
    InvalidParameterError,
)
from tasks.storage.local import LocalStore


def recipe_for(chunk_id: str, member: bytes) -> Recipe:
    return Recipe(
        chunk_id=chunk_id, source_uri="file:///x", original_sha256="0" * 64, original_size=1,
        codec="isal", codec_version="1", level=6, compressed_size=len(member),
        compressed_sha256="1" * 64, ratio=1.0, seconds=0.0, device="cpu",
        created_at=datetime.now(timezone.utc), colabflow_version="0.1.0",
    )


def test_put_chunk_writes_member_then_recipe_with_normal_permissions(tmp_path: Path) -> None:
    """Outputs land under chunks/, readable by others, with no temporary files left."""
    destination = open_destination(str(tmp_path))
    destination.prepare("job")
    recipe = recipe_for("dir/a b.txt", b"member")
    destination.put_chunk("job", "dir/a b.txt", b"member", recipe)
    chunk = tmp_path / "job" / "chunks" / "dir" / "a b.txt.gz"
    assert chunk.read_bytes() == b"member"
    assert destination.read_recipe("job", "dir/a b.txt") == recipe
    assert stat.S_IMODE(chunk.stat().st_mode) & 0o044 == 0o044
    assert not list(tmp_path.rglob(".partial-*"))


def test_an_absent_recipe_reads_as_none(tmp_path: Path) -> None:
    """A chunk not yet written has no recipe and no size."""
    destination = open_destination(str(tmp_path))
    assert destination.read_recipe("job", "a") is None
    assert destination.chunk_size("job", "a") is None


def test_a_corrupt_recipe_is_named_with_the_fix(tmp_path: Path) -> None:
    """A recipe that is not valid JSON names its path and says how to rebuild it."""
    destination = open_destination(str(tmp_path))
    path = tmp_path / "job" / "chunks" / "a.recipe.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(CorruptOutputError, match="is not a valid recipe.*delete it and rerun"):
        destination.read_recipe("job", "a")


def test_an_unsafe_id_never_names_a_file(tmp_path: Path) -> None:
    """Path traversal through a chunk id is refused before any file is touched."""
    with pytest.raises(InvalidChunkError):
        open_destination(str(tmp_path)).chunk_key("job", "../../etc/passwd", ".gz")


def test_a_too_long_name_is_refused_before_any_file(tmp_path: Path) -> None:
    """A 250-byte file name would make a 262-byte recipe name: refused, naming the limit, nothing written."""
    destination = open_destination(str(tmp_path))
    destination.prepare("job")
    chunk_id = "n" * 250
    with pytest.raises(InvalidChunkError, match="file name of 250 bytes; at most 243"):
        destination.put_chunk("job", chunk_id, b"m", recipe_for(chunk_id, b"m"))
    assert not (tmp_path / "job" / "chunks").exists()


def test_prepare_removes_only_stale_temporaries(tmp_path: Path) -> None:
    """A `.partial-` file a killed run left an hour ago goes; one being written now stays."""
    folder = tmp_path / "job" / "chunks" / "deep"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".partial-old", folder / ".partial-new"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_hours_ago = datetime.now(timezone.utc).timestamp() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    open_destination(str(tmp_path)).prepare("job")
    assert not stale.exists()
    assert fresh.exists()


def test_the_write_check_really_writes_every_time(tmp_path: Path) -> None:
    """prepare() rewrites its check file each run, so a folder that became read-only is caught."""
    destination = open_destination(str(tmp_path))
    destination.prepare("job")
    check = tmp_path / "job" / ".colabflow-write-check"
    first = check.read_bytes()
    destination.prepare("job")
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
        message = run_as_nobody(lambda: open_destination(str(locked)).prepare("job"))
    else:
        locked.chmod(0o555)
        try:
            open_destination(str(locked)).prepare("job")
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
        open_destination("github://owner/repo@main/out")
    with pytest.raises(InvalidParameterError, match="cannot be written"):
        open_destination("s3://bucket/prefix")
