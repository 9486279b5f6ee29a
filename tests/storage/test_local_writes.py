"""Local writes: a temporary file per write, named so that no two live writers clash and a leftover is never reused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tasks.storage.local import create_temporary, write_atomically


def test_a_temporary_name_a_killed_process_left_is_passed_over(tmp_path: Path) -> None:
    """Names are `.partial-<pid>-<counter>`: the next two are taken by leftovers, so the third after is used."""
    descriptor, first = create_temporary(tmp_path)
    os.close(descriptor)
    pid, number = Path(first).name.split("-")[1:]
    leftovers = [tmp_path / f".partial-{pid}-{int(number) + step}" for step in (1, 2)]
    for leftover in leftovers:
        leftover.write_bytes(b"left by a killed run")

    descriptor, second = create_temporary(tmp_path)
    os.close(descriptor)

    assert int(pid) == os.getpid() and Path(second).name == f".partial-{pid}-{int(number) + 3}"
    assert [leftover.read_bytes() for leftover in leftovers] == [b"left by a killed run"] * 2


def test_a_file_written_atomically_gets_the_umask_permissions_and_its_folders(tmp_path: Path) -> None:
    """The folders are made on the first write into them; the file is readable by others as the umask allows."""
    previous = os.umask(0o022)
    try:
        target = tmp_path / "new" / "deeper" / "member.gz"
        write_atomically(target, lambda handle: handle.write(b"content"))
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [path.name for path in target.parent.iterdir()] == ["member.gz"]
