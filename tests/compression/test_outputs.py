"""Compression's outputs in a job folder: members and recipes, written safely, read back with clear errors."""

from __future__ import annotations

import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.compression.models import Recipe
from tasks.compression.outputs import member_name, member_size, put_chunk, read_recipe
from tasks.engine.job_folder import open_job_folder
from tasks.errors import CorruptOutputError, InvalidChunkError


def recipe_for(chunk_id: str, member: bytes) -> Recipe:
    return Recipe(
        chunk_id=chunk_id, source_uri="file:///x", original_sha256="0" * 64, original_size=1,
        codec="isal", codec_version="1", level=6, compressed_size=len(member),
        compressed_sha256="1" * 64, ratio=1.0, seconds=0.0, device="cpu",
        created_at=datetime.now(timezone.utc), colabflow_version="0.1.0",
    )


def test_put_chunk_writes_member_then_recipe_with_normal_permissions(tmp_path: Path) -> None:
    """Outputs land under chunks/, readable by others, with no temporary files left."""
    folder = open_job_folder(str(tmp_path), "job")
    folder.prepare()
    recipe = recipe_for("dir/a b.txt", b"member")
    put_chunk(folder, "dir/a b.txt", b"member", recipe)
    chunk = tmp_path / "job" / "chunks" / "dir" / "a b.txt.gz"
    assert chunk.read_bytes() == b"member"
    assert read_recipe(folder, "dir/a b.txt") == recipe
    assert stat.S_IMODE(chunk.stat().st_mode) & 0o044 == 0o044
    assert not list(tmp_path.rglob(".partial-*"))


def test_an_absent_recipe_reads_as_none(tmp_path: Path) -> None:
    """A chunk not yet written has no recipe and no size."""
    folder = open_job_folder(str(tmp_path), "job")
    assert read_recipe(folder, "a") is None
    assert member_size(folder, "a") is None


def test_a_corrupt_recipe_is_named_with_the_fix(tmp_path: Path) -> None:
    """A recipe that is not valid JSON names its path and says how to rebuild it."""
    folder = open_job_folder(str(tmp_path), "job")
    path = tmp_path / "job" / "chunks" / "a.recipe.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(CorruptOutputError, match="is not a valid recipe.*delete it and rerun"):
        read_recipe(folder, "a")


def test_an_unsafe_id_never_names_a_file(tmp_path: Path) -> None:
    """Path traversal through a chunk id is refused before any file is touched."""
    with pytest.raises(InvalidChunkError):
        member_name("../../etc/passwd")


def test_a_too_long_name_is_refused_before_any_file(tmp_path: Path) -> None:
    """A 250-byte file name would make a 262-byte recipe name: refused, naming the limit, nothing written."""
    folder = open_job_folder(str(tmp_path), "job")
    folder.prepare()
    chunk_id = "n" * 250
    with pytest.raises(InvalidChunkError, match="file name of 250 bytes; at most 243"):
        put_chunk(folder, chunk_id, b"m", recipe_for(chunk_id, b"m"))
    assert not (tmp_path / "job" / "chunks").exists()
