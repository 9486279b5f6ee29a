"""Codecs: bytes in, one standard gzip member out.

A codec is chosen once per job (`resolve_codec`) and then only compresses: ISA-L on the CPU, or
nvCOMP on the GPU (`tasks.compression.nvcomp_codec`). Every codec falls back to a stored member when its
output would be larger, so output never grows past the stored size.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import BinaryIO, Literal, Protocol

from isal import isal_zlib

from tasks.compression.gzip_framing import (
    stored_gzip_member,
    stored_member_size,
    write_stored_member,
)
from tasks.compression.nvcomp_codec import (
    GpuProbe,
    NvcompGzipCodec,
    local_gpu_probe,
    log_once,
)
from tasks.errors import CodecUnavailableError
from tasks.gpu.oom_backoff import BatchSizeMemory

CodecChoice = Literal["auto", "cpu", "gpu"]

# Read size for streamed chunks: large enough to keep ISA-L fast, small enough to bound memory.
STREAM_BLOCK = 4 * 1024 * 1024

# gzip-style levels 0-9 onto ISA-L's 0-3; 0 means stored. The default 6 maps to ISA-L 2,
# which benchmarks/codec.py shows no installed library beats on both speed and ratio.
_ISAL_LEVEL = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 3}


class Codec(Protocol):
    """What the compress stage needs from a codec."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def level(self) -> int: ...

    def device_for(self, size: int) -> str:
        """Where a chunk of `size` bytes is compressed: 'cpu' or the GPU's name (for its recipe)."""
        ...

    def compress(self, data: bytes) -> bytes:
        """Return one standard gzip member that decompresses to `data`."""
        ...

    def compress_many(self, chunks: Sequence[bytes]) -> list[bytes]:
        """One standard gzip member per chunk, in order: how a batch should call a codec."""
        ...

    def compress_stream(self, reader: BinaryIO, writer: BinaryIO, size: int) -> None:
        """Write one standard gzip member of `reader`'s `size` bytes to the seekable `writer`.

        Memory stays bounded by the block size, whatever `size` is.
        """
        ...


class IsalGzipCodec:
    """ISA-L deflate on the CPU. It releases the GIL, but for small chunks the Python around it does not: use processes (tasks/engine/cores.py)."""

    name = "isal"
    device = "cpu"

    def __init__(self, level: int) -> None:
        self.level = level
        self.version = version("isal")

    def device_for(self, size: int) -> str:
        return "cpu"

    def compress_many(self, chunks: Sequence[bytes]) -> list[bytes]:
        with ThreadPoolExecutor() as pool:
            return list(pool.map(self.compress, chunks))

    def compress(self, data: bytes) -> bytes:
        if self.level == 0:
            return stored_gzip_member(data)
        member: bytes = isal_zlib.compress(data, _ISAL_LEVEL[self.level], wbits=31)
        if len(member) > stored_member_size(len(data)):
            return stored_gzip_member(data)
        return member

    def compress_stream(self, reader: BinaryIO, writer: BinaryIO, size: int) -> None:
        start = writer.tell()
        if self.level > 0:
            compressor = isal_zlib.compressobj(_ISAL_LEVEL[self.level], isal_zlib.DEFLATED, 31)
            while block := reader.read(STREAM_BLOCK):
                writer.write(compressor.compress(block))
            writer.write(compressor.flush())
            if writer.tell() - start <= stored_member_size(size):
                return
            reader.seek(0)
            writer.seek(start)
            writer.truncate()
        write_stored_member(reader, writer, size)


def gpu_unavailable_message(probe: GpuProbe) -> str:
    """What `--codec gpu` says when the GPU codec cannot run here."""
    return f"codec 'gpu' cannot run: {probe.reason}; use --codec cpu or --codec auto"


def require_codec(choice: CodecChoice) -> None:
    """Fail at once, before a flow run starts, when `choice` cannot run on this machine."""
    if choice == "gpu" and not (probe := local_gpu_probe()).usable:
        raise CodecUnavailableError(gpu_unavailable_message(probe))


def resolve_codec(
    choice: CodecChoice, level: int, batch_sizes: BatchSizeMemory | None = None, probe: GpuProbe | None = None
) -> Codec:
    """Pick the codec for a job, failing before any work if the choice cannot run here.

    `auto` takes the GPU codec when `gpu_probe` finds CUDA and a working nvCOMP, and logs why
    not otherwise; `gpu` without them fails with what is missing. `batch_sizes` keeps the GPU's
    out-of-memory backoff across batches; `probe` replaces this machine's probe (tests).
    """
    cpu = IsalGzipCodec(level)
    if choice == "cpu":
        return cpu
    found = probe or local_gpu_probe()
    if found.usable and found.gpu_name is not None and found.nvcomp_version is not None:
        log_once(f"codec {choice}: nvCOMP {found.nvcomp_version} Deflate on {found.gpu_name} (CUDA {found.cuda_version})")
        return NvcompGzipCodec(level, found.gpu_name, found.nvcomp_version, cpu, batch_sizes)
    if choice == "gpu":
        raise CodecUnavailableError(gpu_unavailable_message(found))
    log_once(f"codec auto: ISA-L on the CPU, because the GPU codec cannot run: {found.reason}")
    return cpu
