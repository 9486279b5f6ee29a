"""Hashing ahead of the plan: the plan uses what was hashed early, unless the file changed since."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from tasks.engine.fingerprints import local_version
from tasks.engine.item_hashes import hash_ahead, take_ahead
from tasks.engine.planning import plan_job
from tests.servers import wait_until


@pytest.fixture
def settled_files(tmp_path: Path) -> Path:
    """Forty files whose versions are trusted: unchanged for longer than the settling time."""
    source = tmp_path / "source"
    source.mkdir()
    for index in range(40):
        (source / f"{index:02d}.txt").write_text(f"file {index}\n" * (index + 1))
    last = source / "39.txt"
    wait_until(lambda: local_version(last.stat(), time.time()) is not None, 10, what="the files to settle")
    return source


def test_hashing_ahead_finds_every_file_with_its_sha256(settled_files: Path) -> None:
    """Each settled file comes back under its URI with the sha256 of its bytes; taking it twice gives nothing."""
    hash_ahead([str(settled_files)])
    ahead = take_ahead()
    assert len(ahead.entries) == 40
    for path in settled_files.iterdir():
        assert ahead.entries[path.absolute().as_uri()].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert take_ahead().entries == {}


def test_the_plan_uses_ahead_hashes_but_rereads_a_file_changed_since(settled_files: Path) -> None:
    """A file rewritten after hashing ahead gets a new version, so the plan reads it again."""
    hash_ahead([str(settled_files)])
    ahead = take_ahead()
    changed = settled_files / "07.txt"
    changed.write_text("rewritten after hashing ahead")
    os.utime(changed, (0, 0))

    plan = plan_job([str(settled_files)], 100, 10**9, hashed_ahead=ahead)

    by_id = {chunk.item_id: chunk for batch in plan.batches for chunk in batch}
    assert by_id["07.txt"].sha256 == hashlib.sha256(b"rewritten after hashing ahead").hexdigest()
    assert all(chunk.sha256 == hashlib.sha256((settled_files / name).read_bytes()).hexdigest()
               for name, chunk in by_id.items())
    assert plan.items_read == 40


def test_hashing_ahead_never_reads_a_link_the_plan_leaves_out(settled_files: Path, tmp_path: Path) -> None:
    """A link outside the source is not hashed ahead unless follow_symlinks: no fingerprint of it exists."""
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the source")
    wait_until(lambda: local_version(secret.stat(), time.time()) is not None, 10, what="the secret to settle")
    (settled_files / "leak.txt").symlink_to(secret)
    leak = (settled_files / "leak.txt").absolute().as_uri()
    hash_ahead([str(settled_files)])
    assert leak not in take_ahead().entries
    hash_ahead([str(settled_files)], follow_symlinks=True)
    assert take_ahead().entries[leak].sha256 == hashlib.sha256(b"outside the source").hexdigest()
