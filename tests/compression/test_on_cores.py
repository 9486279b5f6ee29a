"""A batch of local chunks is shared among worker processes, and gives what one process gives."""

from __future__ import annotations

import gzip
import logging
import os
import random
import signal
from pathlib import Path

import pytest

from tasks.compression.kind import JOB_KIND, batch_codec, compress_batch, prepare_job, spreads_on_cores
from tasks.compression.outputs import JOURNALS_DIR, member_name
from tasks.engine import cores
from tasks.engine.job_folder import job_folder
from tasks.engine.models import BatchResult, ItemFingerprint, JobSettings
from tasks.engine.planning import plan_job
from tests.jobs import recipes_of
from tests.servers import wait_until

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


def recipes_without_timings(result: BatchResult) -> dict[str, dict[str, object]]:
    """Each chunk's recipe in a batch's result, without what differs from run to run."""
    return {recipe.chunk_id: recipe.model_dump(exclude=VARYING) for recipe in recipes_of(result)}


def compress_with_cores(source: Path, destination: Path, count: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    """Compress `source` in one batch with `count` cores; return each chunk's recipe without its timings."""
    monkeypatch.setenv(cores.CORES_VARIABLE, str(count))
    settings = prepare_job(str(destination), "job", "cpu", 6)
    [batch] = plan_job([str(source)], FILES, 10**12).batches
    assert spreads_on_cores(batch, batch_codec(settings), job_folder(settings)) is (count > 1)
    result = compress_batch(batch, settings)
    assert not result.failures
    return recipes_without_timings(result)


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


def two_batches(source: Path, destination: Path) -> tuple[JobSettings, list[list[ItemFingerprint]]]:
    """A CPU job into `destination` whose plan is two batches of `FILES / 2` chunks."""
    settings = prepare_job(str(destination), "job", "cpu", 6)
    batches = plan_job([str(source)], FILES // 2, 10**12).batches
    assert len(batches) == 2
    return settings, batches


def journals(destination: Path) -> list[Path]:
    """The recipe journals the job folder holds: one per batch marked done."""
    return sorted((destination / "job" / JOURNALS_DIR).glob("*.jsonl"))


def test_the_next_batch_is_compressed_ahead_and_marked_done_only_when_run(
    many_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the first batch is collected, the cores go on to the second: its members appear before it runs,
    its journal only when it runs, and every recipe is the one a batch run alone writes."""
    monkeypatch.setenv(cores.CORES_VARIABLE, "2")
    settings, batches = two_batches(many_files, tmp_path / "ahead")
    JOB_KIND.read_ahead(batches, settings)
    first = compress_batch(batches[0], settings)
    second_members = [tmp_path / "ahead" / "job" / member_name(chunk.item_id) for chunk in batches[1]]
    wait_until(lambda: all(path.exists() for path in second_members), 60, what="the second batch's members")
    assert len(journals(tmp_path / "ahead")) == 1
    JOB_KIND.read_ahead(batches[1:], settings)
    second = compress_batch(batches[1], settings)
    assert len(journals(tmp_path / "ahead")) == 2 and not first.failures and not second.failures

    alone_settings, _ = two_batches(many_files, tmp_path / "alone")
    alone = [compress_batch(batch, alone_settings) for batch in batches]
    assert [recipes_without_timings(result) for result in (first, second)] == [recipes_without_timings(r) for r in alone]


def test_a_batch_started_ahead_then_forgotten_is_never_marked_done(
    many_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that stops before a batch it started ahead leaves no journal for it; run later, it completes."""
    monkeypatch.setenv(cores.CORES_VARIABLE, "2")
    settings, batches = two_batches(many_files, tmp_path / "out")
    JOB_KIND.read_ahead(batches, settings)
    JOB_KIND.read_ahead(batches[:1], settings)
    compress_batch(batches[0], settings)
    assert len(journals(tmp_path / "out")) == 1
    later = compress_batch(batches[1], settings)
    assert len(later.outputs) == FILES // 2 and not later.failures and len(journals(tmp_path / "out")) == 2


def test_a_batch_whose_worker_died_ahead_is_compressed_again(
    many_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Both workers are killed while a chunk they must read cannot be opened (a FIFO with no writer):
    the batch started ahead is compressed again by new workers, once the chunk is back."""
    monkeypatch.setenv(cores.CORES_VARIABLE, "2")
    settings, batches = two_batches(many_files, tmp_path / "out")
    blocked = many_files / batches[0][-1].item_id
    content = blocked.read_bytes()
    blocked.unlink()
    os.mkfifo(blocked)
    JOB_KIND.read_ahead(batches[:1], settings)
    for pid in cores.worker_pids():
        os.kill(pid, signal.SIGKILL)
    blocked.unlink()
    blocked.write_bytes(content)

    with caplog.at_level(logging.WARNING, "colabflow.compression"):
        result = compress_batch(batches[0], settings)

    assert "compressing the batch again: worker process" in caplog.text
    assert not result.failures and len(result.outputs) == FILES // 2
    assert gzip.decompress((tmp_path / "out" / "job" / member_name(batches[0][-1].item_id)).read_bytes()) == content
