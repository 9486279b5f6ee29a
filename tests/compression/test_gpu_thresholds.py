"""The GPU's small-chunk threshold: measured by the benchmark, kept per GPU name on result storage, read by the codec."""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from benchmarks.codec import codec_run, gpu_threshold
from tasks.compression.codecs import IsalGzipCodec
from tasks.compression.gpu_thresholds import (
    DEFAULT_MIN_GPU_CHUNK_BYTES,
    THRESHOLDS_KEY,
    read_thresholds,
    record_threshold,
)
from tasks.compression.nvcomp_codec import MAX_GPU_CHUNK_BYTES, NvcompGzipCodec
from tasks.gpu.oom_backoff import BatchSizeMemory
from tasks.storage.places import Place, local_place

DATA = b"def threshold(gpu, cpu):\n    return min(size for size in SIZES if gpu(size) >= cpu(size))\n" * 3_300


class FakeClock:
    """Time that passes only when a fake device says it worked."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def raw_deflate(chunk: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return compressor.compress(chunk) + compressor.flush()


class ClockedLane:
    """A GPU lane run on the CPU (zlib raw Deflate) that costs `per_chunk` s a chunk plus `per_byte` s a byte."""

    def __init__(self, clock: FakeClock, per_chunk: float, per_byte: float) -> None:
        self.clock, self.per_chunk, self.per_byte = clock, per_chunk, per_byte
        self.lock = threading.Lock()

    def submit(self, chunks: Sequence[bytes]) -> Callable[[], list[bytes]]:
        self.clock.now += len(chunks) * self.per_chunk + sum(map(len, chunks)) * self.per_byte
        streams = [raw_deflate(chunk) for chunk in chunks]
        return lambda: streams


class ClockedGpu:
    """Two `ClockedLane`s sharing one clock, handed out by lane as `_shared_backend` does."""

    def __init__(self, clock: FakeClock, per_chunk: float, per_byte: float) -> None:
        self.lanes = [ClockedLane(clock, per_chunk, per_byte) for _ in range(2)]

    def lane(self, index: int) -> ClockedLane:
        return self.lanes[index]


def race(per_chunk: float, gpu_per_byte: float, cpu_per_byte: float) -> int | None:
    """The benchmark's threshold search between a clocked stand-in GPU codec and a clocked ISA-L run."""
    clock = FakeClock()
    gpu = ClockedGpu(clock, per_chunk, gpu_per_byte)
    codec = NvcompGzipCodec(6, "Stand-in GPU", "6.0.0", IsalGzipCodec(6), BatchSizeMemory(), gpu.lane, min_chunk_bytes=1)
    cpu = IsalGzipCodec(6)

    def cpu_run(chunks: list[bytes]) -> int:
        clock.now += sum(map(len, chunks)) * cpu_per_byte
        return sum(len(cpu.compress(chunk)) for chunk in chunks)

    return gpu_threshold(codec_run(codec.compress_many), cpu_run, DATA, clock)


def test_the_search_finds_the_first_size_where_the_gpu_wins() -> None:
    """100 µs a chunk, 3 ns a byte saved: the GPU wins from 33 kB on, so at the 64 KiB step."""
    assert race(per_chunk=1e-4, gpu_per_byte=1e-9, cpu_per_byte=4e-9) == 64 * 1024


def test_a_gpu_that_never_wins_is_none() -> None:
    """A GPU slower per byte than the CPU never wins, at any size."""
    assert race(per_chunk=0.0, gpu_per_byte=5e-9, cpu_per_byte=4e-9) is None


def codec_at(place: Place | None, gpu_name: str) -> NvcompGzipCodec:
    memory = BatchSizeMemory(place)
    return NvcompGzipCodec(6, gpu_name, "6.0.0", IsalGzipCodec(6), memory, ClockedGpu(FakeClock(), 0, 0).lane)


def test_thresholds_round_trip_per_gpu_name(tmp_path: Path) -> None:
    """Recorded values, including 'never', come back per GPU name, in the file on result storage."""
    place = local_place(str(tmp_path))
    record_threshold(place, "Tesla T4", 16_384)
    record_threshold(place, "NVIDIA L4", None)
    record_threshold(place, "Tesla T4", 65_536)
    assert read_thresholds(place) == {"Tesla T4": 65_536, "NVIDIA L4": None}
    stored = json.loads((tmp_path / THRESHOLDS_KEY).read_text())
    assert stored == {"schema_version": 1, "min_gpu_chunk_bytes": {"Tesla T4": 65_536, "NVIDIA L4": None}}


def test_the_codec_routes_by_the_recorded_threshold(tmp_path: Path) -> None:
    """The codec reads its GPU's threshold from the result storage its backoff memory uses."""
    place = local_place(str(tmp_path))
    record_threshold(place, "Recorded GPU", 16_384)
    codec = codec_at(place, "Recorded GPU")
    assert (codec.device_for(16_383), codec.device_for(16_384)) == ("cpu", "Recorded GPU")


def test_a_gpu_recorded_as_never_winning_keeps_every_chunk_on_the_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """'Never' is honoured, not a crash: no size reaches the GPU, and the log says why."""
    place = local_place(str(tmp_path))
    record_threshold(place, "Slow GPU", None)
    with caplog.at_level(logging.INFO, logger="colabflow.codecs"):
        codec = codec_at(place, "Slow GPU")
    assert {codec.device_for(size) for size in (1, 65_536, MAX_GPU_CHUNK_BYTES)} == {"cpu"}
    assert any("measured as never beating the CPU" in message for message in caplog.messages)


def test_an_unmeasured_gpu_gets_the_labelled_default_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No record: the default applies, and the log says it is unmeasured and how to measure, once."""
    place = local_place(str(tmp_path))
    with caplog.at_level(logging.INFO, logger="colabflow.codecs"):
        first, second = codec_at(place, "Unmeasured GPU"), codec_at(place, "Unmeasured GPU")
    assert first.min_chunk_bytes == second.min_chunk_bytes == DEFAULT_MIN_GPU_CHUNK_BYTES
    notes = [message for message in caplog.messages if "Unmeasured GPU" in message]
    assert len(notes) == 1 and "not measured" in notes[0] and "python -m benchmarks.codec --results" in notes[0]


def test_a_damaged_threshold_file_falls_back_to_the_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file that is not a threshold record is named in a warning and ignored."""
    (tmp_path / ".colabflow").mkdir()
    (tmp_path / THRESHOLDS_KEY).write_text('{"min_gpu_chunk_bytes": {"Tesla T4": -1}}')
    with caplog.at_level(logging.WARNING, logger="colabflow.gpu"):
        assert read_thresholds(local_place(str(tmp_path))) == {}
    assert any("gpu-thresholds.json, which is not a valid GPU threshold file" in message for message in caplog.messages)
