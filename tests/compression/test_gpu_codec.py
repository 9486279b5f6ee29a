"""The GPU codec: its CPU seams everywhere (framing, routing, backoff, probe reasons), nvCOMP on a GPU.

Without a GPU, raw Deflate from zlib (wbits=-15) stands in for nvCOMP's RAW bitstream, so
everything but the nvCOMP calls themselves runs here. Tests marked `gpu` need CUDA, and those that
compress need nvCOMP too; without them they are skipped with the reason. With CUDA, the probe's own
test fails when nvCOMP cannot run, so `make test-gpu` never passes on skips alone.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import subprocess
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tasks.compression.codecs import IsalGzipCodec, resolve_codec
from tasks.compression.gzip_framing import stored_member_size
from tasks.compression.nvcomp_backend import (
    PendingEncode,
    aligned_offsets,
    version_tuple,
)
from tasks.compression.nvcomp_codec import (
    BACKOFF_OPERATION,
    MAX_GPU_CHUNK_BYTES,
    MINIMUM_NVCOMP,
    GpuProbe,
    NvcompGzipCodec,
    gpu_probe,
    local_gpu_probe,
    split_by_bytes,
)
from tasks.errors import CodecUnavailableError, CorruptOutputError
from tasks.gpu.oom_backoff import BatchSizeMemory
from tests.machines import gpu_hidden, needs_cuda

GPU = "Tesla T4"
TEXT = b"def compress(data):\n    return nvcomp.encode(data)\n"
needs_gpu = pytest.mark.skipif(
    not local_gpu_probe().usable, reason=f"needs a CUDA GPU with nvCOMP: {local_gpu_probe().reason}"
)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


class ZlibGpu:
    """Stands in for nvCOMP: one lane per CUDA stream, zlib raw Deflate per chunk.

    Records each submit's chunk sizes and every submit and wait in order; a submit of more than
    `oom_above` bytes on one lane raises `oom_error`; `corrupt` and `padding` spoil the streams.
    """

    def __init__(
        self, oom_above: int | None = None, oom_error: type[Exception] = MemoryError, corrupt: bool = False, padding: bytes = b"",
    ) -> None:
        self.batches: list[list[int]] = []
        self.padding = padding
        self.events: list[str] = []
        self.oom_above, self.oom_error = oom_above, oom_error
        self.corrupt = corrupt
        self.lanes: dict[int, ZlibLane] = {}

    def lane(self, index: int) -> ZlibLane:
        """The backend of one lane, made once, as `_shared_backend` does."""
        return self.lanes.setdefault(index, ZlibLane(self, index))


class ZlibLane:
    """One lane of `ZlibGpu`; checks that its own lock is held while it works."""

    def __init__(self, gpu: ZlibGpu, index: int) -> None:
        self.gpu, self.index = gpu, index
        self.lock = threading.Lock()

    def submit(self, chunks: Sequence[bytes]) -> Callable[[], list[bytes]]:
        assert self.lock.locked(), "submit without the backend's lock"
        self.gpu.batches.append([len(chunk) for chunk in chunks])
        self.gpu.events.append(f"submit {self.index}")
        if self.gpu.oom_above is not None and sum(map(len, chunks)) > self.gpu.oom_above:
            raise self.gpu.oom_error(f"CUDA out of memory with {len(chunks)} chunks")
        streams = [raw_deflate(chunk[1:] if self.gpu.corrupt else chunk) + self.gpu.padding for chunk in chunks]

        def wait() -> list[bytes]:
            assert self.lock.locked(), "wait without the backend's lock"
            self.gpu.events.append(f"wait {self.index}")
            return streams

        return wait


def gpu_codec(gpu: ZlibGpu, level: int = 6, memory: BatchSizeMemory | None = None) -> NvcompGzipCodec:
    return NvcompGzipCodec(level, GPU, "6.0.0", IsalGzipCodec(level), memory, gpu.lane, min_chunk_bytes=1024)


def system_gunzip(member: bytes) -> bytes:
    """`gzip -t` accepts the member, and `gzip -dc` restores it: an independent implementation."""
    subprocess.run(["gzip", "-t"], input=member, check=True)
    return subprocess.run(["gzip", "-dc"], input=member, capture_output=True, check=True).stdout


def test_gpu_members_are_standard_gzip_that_system_gzip_restores() -> None:
    """Framed raw Deflate, stored and CPU members all pass `gzip -t` and restore byte for byte."""
    chunks = [TEXT * 40, TEXT * 2000, os.urandom(50_000), b"", TEXT[:100], TEXT * 30_000]
    backend = ZlibGpu()
    members = gpu_codec(backend).compress_many(chunks)
    for chunk, member in zip(chunks, members):
        assert hashlib.sha256(system_gunzip(member)).digest() == hashlib.sha256(chunk).digest()
    assert backend.batches == [[len(TEXT) * 40, len(TEXT) * 2000, 50_000, len(TEXT) * 30_000]]


def test_chunks_go_to_the_gpu_only_between_the_thresholds() -> None:
    """Empty, small and huge chunks stay on the CPU, and so does everything at level 0."""
    codec = gpu_codec(ZlibGpu())
    assert [codec.device_for(size) for size in (0, 1023, 1024, MAX_GPU_CHUNK_BYTES, MAX_GPU_CHUNK_BYTES + 1)] == [
        "cpu", "cpu", GPU, GPU, "cpu",
    ]
    assert gpu_codec(ZlibGpu(), level=0).device_for(4096) == "cpu"


def test_level_zero_never_calls_the_gpu() -> None:
    """Level 0 stores every chunk on the CPU: nothing to gain from a transfer."""
    backend = ZlibGpu()
    member = gpu_codec(backend, level=0).compress(TEXT * 100)
    assert system_gunzip(member) == TEXT * 100 and backend.batches == []


def test_incompressible_gpu_output_falls_back_to_stored_framing() -> None:
    """Random bytes come out as a stored member, never larger than it."""
    data = os.urandom(200_000)
    member = gpu_codec(ZlibGpu()).compress(data)
    assert len(member) == stored_member_size(len(data))
    assert system_gunzip(member) == data


def test_a_gpu_stream_that_does_not_inflate_back_is_refused() -> None:
    """A wrong stream is caught on the host before anything is written, with what to do next."""
    with pytest.raises(CorruptOutputError) as caught:
        gpu_codec(ZlibGpu(corrupt=True)).compress(TEXT * 100)
    assert "does not inflate back to its 5100-byte chunk" in str(caught.value)
    assert "rerun with --codec cpu" in str(caught.value)


def test_gpu_out_of_memory_halves_the_byte_budget_and_remembers_it() -> None:
    """Five equal chunks, room for two per lane: 3+2 fails, then pairs split 1+1 fit; the byte budget is kept."""
    torch = pytest.importorskip("torch", reason="the real torch.cuda.OutOfMemoryError needs torch")
    chunks = [bytes([65 + index]) + TEXT * 100 for index in range(5)]
    size = len(chunks[0])
    gpu, memory = ZlibGpu(oom_above=2 * size, oom_error=torch.cuda.OutOfMemoryError), BatchSizeMemory()
    members = gpu_codec(gpu, memory=memory).compress_many(chunks)
    assert [len(batch) for batch in gpu.batches] == [3, 1, 1, 1, 1, 1]
    assert [system_gunzip(member) for member in members] == chunks
    assert memory.recall(BACKOFF_OPERATION, GPU) == 5 * size // 2


def test_the_remembered_budget_is_bytes_so_small_chunks_still_go_together() -> None:
    """A 40,000-byte budget (learnt on big chunks) takes ten 2 KB chunks in one sub-batch, five per lane."""
    memory = BatchSizeMemory()
    memory.remember(BACKOFF_OPERATION, GPU, 40_000)
    gpu = ZlibGpu()
    small = [bytes([index]) + TEXT * 40 for index in range(10)]
    gpu_codec(gpu, memory=memory).compress_many(small)
    assert gpu.batches == [[len(small[0])] * 5] * 2


def test_both_sub_batches_are_submitted_before_either_is_awaited() -> None:
    """The second lane's copy can overlap the first lane's encode: submit, submit, then wait, wait."""
    gpu = ZlibGpu()
    chunks = [bytes([index]) + TEXT * 100 for index in range(4)]
    members = gpu_codec(gpu).compress_many(chunks)
    assert gpu.events == ["submit 0", "submit 1", "wait 0", "wait 1"]
    assert gpu.batches == [[len(chunks[0])] * 2] * 2
    assert [system_gunzip(member) for member in members] == chunks


def test_codecs_share_each_lane_and_its_lock() -> None:
    """Two codecs over one process's lanes use the same backends, and each holds the backend's own lock."""
    gpu = ZlibGpu()
    first, second = gpu_codec(gpu), gpu_codec(gpu, level=9)
    first.compress_many([b"a" + TEXT * 100, b"b" + TEXT * 100])
    second.compress_many([b"c" + TEXT * 100, b"d" + TEXT * 100])
    assert sorted(gpu.lanes) == [0, 1] and len(gpu.events) == 8
    assert not any(lane.lock.locked() for lane in gpu.lanes.values())


@pytest.mark.parametrize(
    ("sizes", "runs"),
    [([10, 10, 10, 10], [[10, 10], [10, 10]]), ([1, 1, 100], [[1, 1, 100]]), ([100, 1, 1], [[100], [1, 1]]), ([7], [[7]])],
)
def test_sub_batches_split_the_bytes_in_two(sizes: list[int], runs: list[list[int]]) -> None:
    """Consecutive runs with about half the bytes each; never an empty run."""
    chunks = [bytes(size) for size in sizes]
    assert [[len(chunk) for chunk in run] for run in split_by_bytes(chunks, 2)] == runs


def test_stream_goes_through_the_gpu_when_the_size_fits_else_the_cpu() -> None:
    """compress_stream agrees with device_for: small enough reads the chunk whole for the GPU."""
    backend = ZlibGpu()
    codec = gpu_codec(backend)
    data = TEXT * 100
    written = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), written, len(data))
    assert system_gunzip(written.getvalue()) == data and backend.batches == [[len(data)]]
    small = io.BytesIO()
    codec.compress_stream(io.BytesIO(b"tiny"), small, 4)
    assert system_gunzip(small.getvalue()) == b"tiny" and len(backend.batches) == 1


class HostBatch:
    """A `BatchArray.cpu()` stand-in whose entries are whole buffers (stream plus unused capacity)."""

    def __init__(self, streams: list[bytes], capacity: int, sizes_as_method: bool) -> None:
        self.entries = [stream.ljust(capacity, b"\x00") for stream in streams]
        sizes = [len(stream) for stream in streams]
        self.buffer_sizes: Any = (lambda: sizes) if sizes_as_method else sizes

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> bytes:
        return self.entries[index]


@pytest.mark.parametrize("sizes_as_method", [False, True], ids=["property", "method"])
def test_encoded_entries_are_cut_at_their_compressed_sizes(sizes_as_method: bool) -> None:
    """Whatever an entry's bytes span, each stream ends at `buffer_sizes`, and then inflates back."""
    chunks = [TEXT * 100, TEXT * 7]
    streams = [raw_deflate(chunk) for chunk in chunks]
    host = HostBatch(streams, capacity=4096, sizes_as_method=sizes_as_method)
    pending = PendingEncode(SimpleNamespace(cpu=lambda: host), ())
    assert pending() == streams


def test_nvcomp_5_lists_come_back_one_stream_per_array() -> None:
    """nvCOMP 5.x encodes a list into a list of Arrays, each resized to its stream; each is copied back."""
    streams = [raw_deflate(TEXT * 100), raw_deflate(TEXT * 3)]
    arrays = [SimpleNamespace(cpu=lambda stream=stream: bytearray(stream)) for stream in streams]
    assert PendingEncode(arrays, ())() == streams


def test_a_stream_with_trailing_bytes_is_refused() -> None:
    """Unused capacity left on a stream fails the host check instead of reaching a .gz."""
    with pytest.raises(CorruptOutputError, match="does not inflate back"):
        gpu_codec(ZlibGpu(padding=b"\x00" * 16)).compress(TEXT * 100)


def test_offsets_honour_the_alignment() -> None:
    """Each chunk starts at a multiple of the alignment nvCOMP asks for."""
    assert aligned_offsets([5, 8, 1, 0, 3], 8) == ([0, 8, 16, 24, 24], 27)


def fake_torch(cuda: str | None = "12.4", hip: str | None = None, available: bool = True) -> SimpleNamespace:
    """A torch that reports one GPU (or none), for the probe's later steps."""
    return SimpleNamespace(
        __version__="2.5.1+cu124",
        version=SimpleNamespace(cuda=cuda, hip=hip),
        device=lambda kind, index: SimpleNamespace(type=kind, index=index),
        cuda=SimpleNamespace(
            is_available=lambda: available, current_device=lambda: 0, get_device_name=lambda index: GPU,
            Stream=lambda device: SimpleNamespace(cuda_stream=7),
        ),
    )


def fake_nvcomp(version: str = "6.0.0", cuda: int = 12090, codec: Callable[..., Any] | None = None) -> SimpleNamespace:
    def refuse(**options: Any) -> None:
        raise RuntimeError("no kernel image is available for execution on the device")

    return SimpleNamespace(
        __version__=version, __cuda_version__=cuda, BitstreamKind=SimpleNamespace(RAW="raw"), Codec=codec or refuse
    )


def importer(**modules: object) -> Callable[[str], Any]:
    """An import function that serves the given modules and imports the rest for real."""
    names = {name.replace("_", "."): module for name, module in modules.items()}

    def import_module(name: str) -> Any:
        if name in names:
            if names[name] is None:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return names[name]
        return importlib.import_module(name)

    return import_module


@pytest.mark.parametrize(
    ("modules", "reason"),
    [
        ({"torch": None}, "torch is not installed, so CUDA cannot be detected"),
        ({"torch": fake_torch(cuda=None, hip="6.2.41133")}, "torch 2.5.1+cu124 is a ROCm build (HIP 6.2.41133), and "
         "nvCOMP runs only on NVIDIA GPUs through CUDA; use --codec cpu"),
        ({"torch": fake_torch(available=False)}, "no CUDA GPU: torch 2.5.1+cu124 (CUDA 12.4) finds no CUDA GPU or driver"),
        ({"torch": fake_torch(cuda=None)}, "reports a GPU but no CUDA version (torch.version.cuda is None)"),
        ({"torch": fake_torch(), "nvidia_nvcomp": None}, "nvCOMP is not installed (No module named 'nvidia.nvcomp'); "
         'pip install "colabflow[gpu]"'),
        ({"torch": fake_torch("13.0"), "nvidia_nvcomp": None}, 'pip install "colabflow[gpu-cu13]"'),
        ({"torch": fake_torch("11.8"), "nvidia_nvcomp": None}, "supports CUDA 12 and 13, and torch uses CUDA 11.8"),
        ({"torch": fake_torch(), "nvidia_nvcomp": fake_nvcomp(cuda=13000)},
         "nvCOMP 6.0.0 is built for CUDA 13 but torch uses CUDA 12.4; pip uninstall -y nvidia-nvcomp-cu13 "
         'nvidia-libnvcomp-cu13, then pip install "colabflow[gpu]"'),
        ({"torch": fake_torch(), "nvidia_nvcomp": fake_nvcomp(version="5.2.0.13")},
         "nvCOMP 5.2.0.13 is older than 5.3, whose batch encode this codec uses"),
        ({"torch": fake_torch(), "nvidia_nvcomp": fake_nvcomp()},
         "nvCOMP 6.0.0 could not compress a test chunk on Tesla T4: RuntimeError: no kernel image is available"),
    ],
)
def test_the_probe_says_what_is_missing(modules: dict[str, object], reason: str) -> None:
    """Each missing piece has its own reason, naming the fix."""
    probe = gpu_probe(importer(**modules))
    assert not probe.usable
    assert reason in probe.reason


def test_the_probe_on_the_real_torch_without_cuda_names_its_build(tmp_path: Path) -> None:
    """The real torch with no GPU in sight (hidden on a GPU host): the probe names its build, CPU or CUDA."""
    torch = pytest.importorskip("torch", reason="the probe's build reasons need torch")
    with gpu_hidden(tmp_path):
        probe = gpu_probe()
    assert (probe.usable, probe.gpu_name) == (False, None)
    build = "is a CPU-only build" if torch.version.cuda is None else f"(CUDA {torch.version.cuda}) finds no CUDA GPU or driver"
    assert probe.reason == f"no CUDA GPU: torch {torch.__version__} {build}"


@pytest.mark.gpu
@needs_cuda
def test_the_probe_finds_this_gpu_and_its_nvcomp() -> None:
    """On a real GPU with the gpu extra: the probe is usable and names torch's GPU and CUDA, and nvCOMP 5.3+.

    It needs CUDA only, so a missing or broken nvCOMP fails here with the probe's reason rather than skipping.
    """
    import torch

    probe = local_gpu_probe()
    assert probe.usable, probe.reason
    assert probe.gpu_name == torch.cuda.get_device_name(torch.cuda.current_device())
    assert probe.cuda_version == torch.version.cuda
    assert probe.nvcomp_version is not None and version_tuple(probe.nvcomp_version) >= MINIMUM_NVCOMP


USABLE = GpuProbe(True, "", GPU, "12.4", "6.0.0")


def test_auto_and_gpu_pick_nvcomp_when_the_probe_finds_it() -> None:
    """A usable GPU makes auto and gpu resolve to the nvCOMP codec; cpu stays on ISA-L."""
    for choice in ("auto", "gpu"):
        codec = resolve_codec(choice, 6, probe=USABLE)  # type: ignore[arg-type]
        assert (codec.name, codec.device, codec.level) == ("nvcomp-deflate", GPU, 6)
        assert codec.version.startswith("6.0.0+isal-")
    assert resolve_codec("cpu", 6, probe=USABLE).name == "isal"


def test_auto_without_a_gpu_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    """auto falls back to ISA-L and says why on the colabflow.codecs logger."""
    probe = GpuProbe(False, "no CUDA GPU: test_auto_without_a_gpu_logs_why")
    with caplog.at_level("INFO", logger="colabflow.codecs"):
        codec = resolve_codec("auto", 6, probe=probe)
    assert (codec.name, codec.device) == ("isal", "cpu")
    assert caplog.messages == ["codec auto: ISA-L on the CPU, because the GPU codec cannot run: "
                               "no CUDA GPU: test_auto_without_a_gpu_logs_why"]


def test_gpu_without_nvcomp_fails_at_once_with_the_reason() -> None:
    """codec=gpu raises before any work, with the probe's reason and the way out."""
    probe = GpuProbe(False, "nvCOMP is not installed (No module named 'nvidia.nvcomp')")
    with pytest.raises(CodecUnavailableError) as caught:
        resolve_codec("gpu", 6, probe=probe)
    assert str(caught.value) == (
        "codec 'gpu' cannot run: nvCOMP is not installed (No module named 'nvidia.nvcomp'); "
        "use --codec cpu or --codec auto"
    )


@pytest.mark.gpu
@needs_gpu
def test_nvcomp_members_restore_with_system_gzip() -> None:
    """On a real GPU: every member of a mixed batch passes `gzip -t` and restores."""
    chunks = [TEXT * 4000, os.urandom(300_000), TEXT[:50], TEXT * 100_000, b""]
    codec = resolve_codec("gpu", 6)
    members = codec.compress_many(chunks)
    for chunk, member in zip(chunks, members):
        assert system_gunzip(member) == chunk
    assert codec.device_for(len(chunks[0])) == local_gpu_probe().gpu_name


@pytest.mark.gpu
@needs_cuda
def test_real_cuda_out_of_memory_backs_off() -> None:
    """On a real GPU: sub-batches that allocate a third of its memory per item halve until they fit."""
    import torch

    from tasks.gpu.oom_backoff import run_with_oom_backoff

    third = torch.cuda.get_device_properties(0).total_memory // 3
    tried: list[int] = []

    def allocate(items: list[int]) -> list[int]:
        tried.append(len(items))
        block = torch.empty(len(items) * third, dtype=torch.uint8, device="cuda")
        return [int(block.numel() > 0) for _ in items]

    memory = BatchSizeMemory()
    assert run_with_oom_backoff("allocate", list(range(8)), allocate, GPU, memory) == [1] * 8
    assert tried[:2] == [8, 4] and set(tried[2:]) <= {1, 2}
    assert memory.recall("allocate", GPU) == tried[-1]
