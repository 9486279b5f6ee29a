"""A GPU codec gets a batch's chunks in one call; checked on the CPU with a stand-in codec."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from tasks.compression.codecs import IsalGzipCodec
from tasks.compression.kind import compress_batch_with, prepare_job
from tasks.engine.job_folder import job_folder
from tasks.engine.models import ItemFailure
from tasks.engine.planning import plan_job
from tests.jobs import recipes_of

GPU = "Stand-in GPU"


class BatchRecordingCodec:
    """ISA-L underneath, a GPU's name on top; records every `compress_many` call."""

    name = "stand-in-gpu"
    version = "1"
    device = GPU
    level = 6

    def __init__(self) -> None:
        self.cpu = IsalGzipCodec(6)
        self.calls: list[int] = []

    def device_for(self, size: int) -> str:
        return GPU if size >= 1024 else "cpu"

    def compress(self, data: bytes) -> bytes:
        raise AssertionError("a GPU codec must get the batch's chunks in one compress_many call")

    def compress_many(self, chunks: Sequence[bytes]) -> list[bytes]:
        self.calls.append(len(chunks))
        return [self.cpu.compress(chunk) for chunk in chunks]

    def compress_stream(self, reader: BinaryIO, writer: BinaryIO, size: int) -> None:
        self.cpu.compress_stream(reader, writer, size)


def test_a_gpu_batch_is_one_codec_call_and_recipes_say_where_each_chunk_ran(sample_source: Path, tmp_path: Path) -> None:
    """A GPU codec gets a batch's in-memory chunks in one call; changed chunks fail alone; reruns skip the codec."""
    settings = prepare_job(str(tmp_path / "out"), "gpu", "cpu", 6)
    [batch] = plan_job([str(sample_source)], 100, 10**9).batches
    changed = next(chunk for chunk in batch if chunk.item_id == "src/chunk_ids.py.txt")
    (sample_source / "src" / "chunk_ids.py.txt").write_text("edited after the plan")
    codec = BatchRecordingCodec()
    destination = job_folder(settings)

    result = compress_batch_with(batch, settings, codec, destination)  # type: ignore[arg-type]

    assert codec.calls == [len(batch) - 1]
    assert [failure.item_id for failure in result.failures] == [changed.item_id]
    assert isinstance(result.failures[0], ItemFailure) and "changed while the job ran" in result.failures[0].reason
    for recipe in recipes_of(result):
        assert recipe.device == (GPU if recipe.original_size >= 1024 else "cpu")
        assert recipe.codec == "stand-in-gpu"
        member = tmp_path / "out" / "gpu" / "chunks" / f"{recipe.chunk_id}.gz"
        assert subprocess.run(["gzip", "-t", str(member)]).returncode == 0
    assert {recipe.device for recipe in recipes_of(result)} == {GPU, "cpu"}

    again = compress_batch_with(batch, settings, codec, destination)  # type: ignore[arg-type]
    assert codec.calls == [len(batch) - 1], "chunks already at the destination went to the codec again"
    assert sorted(again.found_at_destination) == sorted(recipe.chunk_id for recipe in recipes_of(result))
