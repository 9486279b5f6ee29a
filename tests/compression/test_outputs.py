"""Compression's outputs in a job folder: members and recipes, written safely, read back with clear errors."""

from __future__ import annotations

import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.compression.models import Recipe
from tasks.compression.outputs import (
    journal_name,
    load_recipe_index,
    member_name,
    member_size,
    put_member,
    write_journal,
)
from tasks.engine.job_folder import open_job_folder
from tasks.engine.models import ItemFingerprint
from tasks.errors import CorruptOutputError, InvalidChunkError


def recipe_for(chunk_id: str, member: bytes) -> Recipe:
    return Recipe(
        chunk_id=chunk_id, source_uri="file:///x", original_sha256="0" * 64, original_size=1,
        codec="isal", codec_version="1", level=6, compressed_size=len(member),
        compressed_sha256="1" * 64, ratio=1.0, seconds=0.0, device="cpu",
        created_at=datetime.now(timezone.utc), colabflow_version="0.1.0",
    )


def fingerprint(chunk_id: str) -> ItemFingerprint:
    return ItemFingerprint(item_id=chunk_id, uri=f"file:///{chunk_id}", size=1, sha256="0" * 64)


def test_members_land_under_chunks_and_a_journal_marks_them_done(tmp_path: Path) -> None:
    """Members land under chunks/, readable by others; one journal per batch holds their recipes."""
    folder = open_job_folder(str(tmp_path), "job")
    folder.prepare()
    recipes = [recipe_for("dir/a b.txt", b"member"), recipe_for("b.txt", b"other")]
    put_member(folder, "dir/a b.txt", b"member")
    put_member(folder, "b.txt", b"other")
    assert load_recipe_index(folder).get("b.txt") is None
    batch = [fingerprint(recipe.chunk_id) for recipe in recipes]
    write_journal(folder, batch, recipes)
    chunk = tmp_path / "job" / "chunks" / "dir" / "a b.txt.gz"
    assert chunk.read_bytes() == b"member"
    index = load_recipe_index(folder)
    assert (index.get("dir/a b.txt"), index.get("b.txt")) == (recipes[0], recipes[1])
    [journal] = (tmp_path / "job" / "recipes").iterdir()
    assert journal.name == journal_name(list(reversed(batch))).removeprefix("recipes/")
    assert stat.S_IMODE(chunk.stat().st_mode) & 0o044 == 0o044
    assert not list(tmp_path.rglob(".partial-*"))


def test_an_absent_recipe_reads_as_none(tmp_path: Path) -> None:
    """A chunk not yet written has no recipe and no size."""
    folder = open_job_folder(str(tmp_path), "job")
    assert load_recipe_index(folder).get("a") is None
    assert member_size(folder, "a") is None


def test_a_corrupt_per_chunk_recipe_is_named_with_the_fix(tmp_path: Path) -> None:
    """A per-chunk recipe (folders before the journals) that is not valid JSON names its path and the fix."""
    folder = open_job_folder(str(tmp_path), "job")
    path = tmp_path / "job" / "chunks" / "a.recipe.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(CorruptOutputError, match="is not a valid recipe.*delete it and rerun"):
        load_recipe_index(folder).get("a")


def test_an_unsafe_id_never_names_a_file(tmp_path: Path) -> None:
    """Path traversal through a chunk id is refused before any file is touched."""
    with pytest.raises(InvalidChunkError):
        member_name("../../etc/passwd")


def test_a_too_long_name_is_refused_before_any_file(tmp_path: Path) -> None:
    """A 250-byte file name leaves no room for a 12-byte suffix: refused, naming the limit, nothing written."""
    folder = open_job_folder(str(tmp_path), "job")
    folder.prepare()
    chunk_id = "n" * 250
    with pytest.raises(InvalidChunkError, match="file name of 250 bytes; at most 243"):
        put_member(folder, chunk_id, b"m")
    assert not (tmp_path / "job" / "chunks").exists()
