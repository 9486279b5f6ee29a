"""The GPU codec: its CPU seams everywhere (framing, routing, backoff, probe reasons), nvCOMP on a GPU.

Without a GPU, raw Deflate from zlib (wbits=-15) stands in for nvCOMP's RAW bitstream, so
everything but the nvCOMP calls themselves runs here. Tests marked `gpu` need CUDA and nvCOMP and
are skipped, with the probe's reason, without them.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import subprocess
import zlib
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from tasks.codecs import IsalGzipCodec, resolve_codec
from tasks.errors import CodecUnavailableError, CorruptOutputError
from tasks.gzip_framing import stored_member_size
from tasks.nvcomp_codec import (
    MAX_GPU_CHUNK_BYTES,
    OPERATION,
    GpuProbe,
    NvcompGzipCodec,
    aligned_offsets,
    gpu_probe,
    local_gpu_probe,
)
from tasks.oom_backoff import BatchSizeMemory

GPU = "Tesla T4"
TEXT = b"def compress(data):\n    return nvcomp.encode(data)\n"
needs_gpu = pytest.mark.skipif(
    not local_gpu_probe().usable, reason=f"needs a CUDA GPU with nvCOMP: {local_gpu_probe().reason}"
)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


class ZlibBackend:
    """Stands in for nvCOMP: zlib raw Deflate per chunk; records each sub-batch, OOMs above a size."""

    def __init__(self, oom_above: int | None = None, oom_error: type[Exception] = MemoryError, corrupt: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.oom_above, self.oom_error = oom_above, oom_error
        self.corrupt = corrupt

    def submit(self, chunks: Sequence[bytes]) -> Callable[[], list[bytes]]:
        self.batches.append([len(chunk) for chunk in chunks])
        if self.oom_above is not None and len(chunks) > self.oom_above:
            raise self.oom_error(f"CUDA out of memory with {len(chunks)} chunks")
        streams = [raw_deflate(chunk[1:] if self.corrupt else chunk) for chunk in chunks]
        return lambda: streams


def gpu_codec(backend: ZlibBackend, level: int = 6, memory: BatchSizeMemory | None = None) -> NvcompGzipCodec:
    return NvcompGzipCodec(level, GPU, "6.0.0", IsalGzipCodec(level), memory, lambda: backend, min_chunk_bytes=1024)


def system_gunzip(member: bytes) -> bytes:
    """`gzip -t` accepts the member, and `gzip -dc` restores it: an independent implementation."""
    subprocess.run(["gzip", "-t"], input=member, check=True)
    return subprocess.run(["gzip", "-dc"], input=member, capture_output=True, check=True).stdout


def test_gpu_members_are_standard_gzip_that_system_gzip_restores() -> None:
    """Framed raw Deflate, stored and CPU members all pass `gzip -t` and restore byte for byte."""
    chunks = [TEXT * 40, TEXT * 2000, os.urandom(50_000), b"", TEXT[:100], TEXT * 30_000]
    backend = ZlibBackend()
    members = gpu_codec(backend).compress_many(chunks)
    for chunk, member in zip(chunks, members):
        assert hashlib.sha256(system_gunzip(member)).digest() == hashlib.sha256(chunk).digest()
    assert backend.batches == [[len(TEXT) * 40, len(TEXT) * 2000, 50_000, len(TEXT) * 30_000]]


def test_chunks_go_to_the_gpu_only_between_the_thresholds() -> None:
    """Empty, small and huge chunks stay on the CPU, and so does everything at level 0."""
    codec = gpu_codec(ZlibBackend())
    assert [codec.device_for(size) for size in (0, 1023, 1024, MAX_GPU_CHUNK_BYTES, MAX_GPU_CHUNK_BYTES + 1)] == [
        "cpu", "cpu", GPU, GPU, "cpu",
    ]
    assert gpu_codec(ZlibBackend(), level=0).device_for(4096) == "cpu"


def test_level_zero_never_calls_the_gpu() -> None:
    """Level 0 stores every chunk on the CPU: nothing to gain from a transfer."""
    backend = ZlibBackend()
    member = gpu_codec(backend, level=0).compress(TEXT * 100)
    assert system_gunzip(member) == TEXT * 100 and backend.batches == []


def test_incompressible_gpu_output_falls_back_to_stored_framing() -> None:
    """Random bytes come out as a stored member, never larger than it."""
    data = os.urandom(200_000)
    member = gpu_codec(ZlibBackend()).compress(data)
    assert len(member) == stored_member_size(len(data))
    assert system_gunzip(member) == data


def test_a_gpu_stream_that_does_not_inflate_back_is_refused() -> None:
    """A wrong stream is caught on the host before anything is written, with what to do next."""
    with pytest.raises(CorruptOutputError) as caught:
        gpu_codec(ZlibBackend(corrupt=True)).compress(TEXT * 100)
    assert "does not inflate back to its 5100-byte chunk" in str(caught.value)
    assert "rerun with --codec cpu" in str(caught.value)


def test_gpu_out_of_memory_halves_the_sub_batch_and_remembers_it() -> None:
    """Five GPU chunks with room for two: encode calls of 5 (OOM), 2, 2, 1; all restore in order."""
    torch = pytest.importorskip("torch", reason="the real torch.cuda.OutOfMemoryError needs torch")
    chunks = [TEXT * (100 + index) for index in range(5)]
    backend, memory = ZlibBackend(oom_above=2, oom_error=torch.cuda.OutOfMemoryError), BatchSizeMemory()
    members = gpu_codec(backend, memory=memory).compress_many(chunks)
    assert [len(batch) for batch in backend.batches] == [5, 2, 2, 1]
    assert [system_gunzip(member) for member in members] == chunks
    assert memory.recall(OPERATION, GPU) == 2


def test_stream_goes_through_the_gpu_when_the_size_fits_else_the_cpu() -> None:
    """compress_stream agrees with device_for: small enough reads the chunk whole for the GPU."""
    backend = ZlibBackend()
    codec = gpu_codec(backend)
    data = TEXT * 100
    written = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), written, len(data))
    assert system_gunzip(written.getvalue()) == data and backend.batches == [[len(data)]]
    small = io.BytesIO()
    codec.compress_stream(io.BytesIO(b"tiny"), small, 4)
    assert system_gunzip(small.getvalue()) == b"tiny" and len(backend.batches) == 1


def test_offsets_honour_the_alignment() -> None:
    """Each chunk starts at a multiple of the alignment nvCOMP asks for."""
    assert aligned_offsets([5, 8, 1, 0, 3], 8) == ([0, 8, 16, 24, 24], 27)


def fake_torch(cuda: str | None = "12.4") -> SimpleNamespace:
    """A torch that reports one CUDA device, for the probe's later steps."""
    return SimpleNamespace(
        __version__="2.5.1+cu124",
        version=SimpleNamespace(cuda=cuda),
        device=lambda kind, index: SimpleNamespace(type=kind, index=index),
        cuda=SimpleNamespace(
            is_available=lambda: True, current_device=lambda: 0, get_device_name=lambda index: GPU,
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
        ({"torch": fake_torch(), "nvidia_nvcomp": None}, "nvCOMP is not installed (No module named 'nvidia.nvcomp'); "
         'pip install "colabflow[gpu]"'),
        ({"torch": fake_torch("13.0"), "nvidia_nvcomp": None}, 'pip install "colabflow[gpu-cu13]"'),
        ({"torch": fake_torch("11.8"), "nvidia_nvcomp": None}, "supports CUDA 12 and 13, and torch uses CUDA 11.8"),
        ({"torch": fake_torch(), "nvidia_nvcomp": fake_nvcomp(cuda=13000)},
         "nvCOMP 6.0.0 is built for CUDA 13 but torch uses CUDA 12.4; pip uninstall -y nvidia-nvcomp-cu13 "
         'nvidia-libnvcomp-cu13, then pip install "colabflow[gpu]"'),
        ({"torch": fake_torch(), "nvidia_nvcomp": fake_nvcomp(version="5.1.0")},
         "nvCOMP 5.1.0 is older than 6.0, whose batch API this codec uses"),
        ({"torch": fake_torch(), "nvidia_nvcomp": fake_nvcomp()},
         "nvCOMP 6.0.0 could not compress a test chunk on Tesla T4: RuntimeError: no kernel image is available"),
    ],
)
def test_the_probe_says_what_is_missing(modules: dict[str, object], reason: str) -> None:
    """Each missing piece has its own reason, naming the fix."""
    probe = gpu_probe(importer(**modules))
    assert not probe.usable
    assert reason in probe.reason


def test_the_probe_on_this_cpu_torch_names_the_cpu_build() -> None:
    """The real torch here is a CPU wheel: the probe says so."""
    torch = pytest.importorskip("torch", reason="the probe's CPU-build reason needs torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    probe = gpu_probe()
    assert (probe.usable, probe.gpu_name) == (False, None)
    assert probe.reason == f"no CUDA GPU: torch {torch.__version__} is a CPU-only build"


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
@needs_gpu
def test_real_cuda_out_of_memory_backs_off() -> None:
    """On a real GPU: sub-batches that allocate a third of its memory per item halve until they fit."""
    import torch

    from tasks.oom_backoff import run_with_oom_backoff

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
