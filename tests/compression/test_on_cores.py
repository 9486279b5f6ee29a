"""A batch of local chunks is shared among worker processes, and gives what one process gives."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from tasks.compression.kind import batch_codec, compress_batch, prepare_job, spreads_on_cores
from tasks.engine import cores
from tasks.engine.job_folder import job_folder
from tasks.engine.planning import plan_job
from tests.jobs import recipes_of

FILES = 80
VARYING = {"created_at", "seconds"}


@pytest.fixture
def many_files(tmp_path: Path) -> Path:
    """80 files of mixed sizes and kinds: text, repetitive, random; one large enough to weigh alone."""
    source = tmp_path / "source"
    generator = random.Random(7)
    for index in range(FILES):
        path = source / f"part-{index % 3}" / f"file-{index:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if index == 5:
            path.write_bytes(generator.randbytes(512 * 1024))
        else:
            path.write_bytes((f"line {index}\n" * generator.randint(1, 4000)).encode())
    return source


def compress_with_cores(source: Path, destination: Path, count: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    """Compress `source` in one batch with `count` cores; return each chunk's recipe without its timings."""
    monkeypatch.setenv(cores.CORES_VARIABLE, str(count))
    settings = prepare_job(str(destination), "job", "cpu", 6)
    [batch] = plan_job([str(source)], FILES, 10**12).batches
    assert spreads_on_cores(batch, batch_codec(settings), job_folder(settings)) is (count > 1)
    result = compress_batch(batch, settings)
    assert not result.failures
    return {recipe.chunk_id: recipe.model_dump(exclude=VARYING) for recipe in recipes_of(result)}


def test_two_cores_write_the_same_members_and_recipes_as_one(
    many_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes change where the work runs, not one byte of what it writes."""
    alone = compress_with_cores(many_files, tmp_path / "one", 1, monkeypatch)
    shared = compress_with_cores(many_files, tmp_path / "two", 2, monkeypatch)
    assert shared == alone and len(shared) == FILES
    for chunk_id in shared:
        member = (tmp_path / "two" / "job" / "chunks" / f"{chunk_id}.gz").read_bytes()
        assert member == (tmp_path / "one" / "job" / "chunks" / f"{chunk_id}.gz").read_bytes()
        assert gzip.decompress(member) == (many_files / chunk_id).read_bytes()


def test_on_cores_a_changed_chunk_fails_alone_and_a_rerun_finds_the_rest(
    many_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk edited after planning is that chunk's failure; the batch run again reuses every other chunk."""
    monkeypatch.setenv(cores.CORES_VARIABLE, "2")
    settings = prepare_job(str(tmp_path / "out"), "job", "cpu", 6)
    [batch] = plan_job([str(many_files)], FILES, 10**12).batches
    (many_files / "part-1" / "file-040.txt").write_text("edited after the plan")

    result = compress_batch(batch, settings)

    assert [failure.item_id for failure in result.failures] == ["part-1/file-040.txt"]
    assert "changed while the job ran" in result.failures[0].reason
    assert len(result.outputs) == FILES - 1 and not result.found_at_destination
    again = compress_batch(batch, settings)
    assert len(again.found_at_destination) == FILES - 1 and len(again.failures) == 1
