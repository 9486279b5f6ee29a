"""Codecs: bytes in, one standard gzip member out.

A codec is chosen once per job (`resolve_codec`) and then only compresses. Every codec falls
back to a stored member when its output would be larger, so output never grows past the
stored size.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import BinaryIO, Literal, Protocol

from isal import isal_zlib

from tasks.errors import CodecUnavailableError
from tasks.gzip_framing import stored_gzip_member, stored_member_size, write_stored_member

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

    def compress(self, data: bytes) -> bytes:
        """Return one standard gzip member that decompresses to `data`."""
        ...

    def compress_stream(self, reader: BinaryIO, writer: BinaryIO, size: int) -> None:
        """Write one standard gzip member of `reader`'s `size` bytes to the seekable `writer`.

        Memory stays bounded by the block size, whatever `size` is.
        """
        ...


class IsalGzipCodec:
    """ISA-L deflate on the CPU. Releases the GIL, so threads use every core."""

    name = "isal"
    device = "cpu"

    def __init__(self, level: int) -> None:
        self.level = level
        self.version = version("isal")

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


def missing_gpu_reason() -> str:
    """Say why no GPU codec can run here."""
    try:
        import torch
    except ImportError:
        return "torch is not installed, so CUDA cannot be detected"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: this machine has no usable CUDA GPU"
    return f"a CUDA GPU ({torch.cuda.get_device_name(0)}) is present, but this version has no GPU codec"


def resolve_codec(choice: CodecChoice, level: int) -> Codec:
    """Pick the codec for a job, failing before any work if the choice cannot run here.

    `auto` uses the CPU codec until a GPU codec exists; `gpu` fails with the reason.
    """
    if choice == "gpu":
        raise CodecUnavailableError(
            f"codec 'gpu' cannot run: {missing_gpu_reason()}; use --codec cpu or --codec auto"
        )
    return IsalGzipCodec(level)
