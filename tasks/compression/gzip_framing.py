"""Standard gzip members (RFC 1952) built around raw deflate streams (RFC 1951).

Any codec that emits raw deflate (ISA-L, zlib with wbits=-15, or a GPU) becomes a file that
plain `gzip -d` restores once it is framed here.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from isal import isal_zlib

# Magic, deflate, no flags, mtime 0 (so equal input gives equal bytes), no extra flags, OS unknown.
GZIP_HEADER = bytes([0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xFF])
_MAX_STORED_BLOCK = 65535


def frame_raw_deflate(raw_deflate: bytes, crc32: int, original_size: int) -> bytes:
    """Wrap a raw deflate stream in a gzip header and a CRC32/ISIZE trailer."""
    return GZIP_HEADER + raw_deflate + struct.pack("<II", crc32 & 0xFFFFFFFF, original_size & 0xFFFFFFFF)


def stored_deflate(data: bytes) -> bytes:
    """Raw deflate of stored blocks only: the input plus 5 bytes per 64 KiB block."""
    view = memoryview(data)
    starts = range(0, max(len(data), 1), _MAX_STORED_BLOCK)
    parts: list[bytes] = []
    for start in starts:
        block = view[start : start + _MAX_STORED_BLOCK]
        final = 1 if start + _MAX_STORED_BLOCK >= len(data) else 0
        parts.append(struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF))
        parts.append(bytes(block))
    return b"".join(parts)


def stored_gzip_member(data: bytes) -> bytes:
    """One gzip member of stored blocks: what incompressible input becomes."""
    return frame_raw_deflate(stored_deflate(data), isal_zlib.crc32(data), len(data))


def stored_member_size(original_size: int) -> int:
    """Size of `stored_gzip_member` output for an input of `original_size` bytes."""
    blocks = max(1, -(-original_size // _MAX_STORED_BLOCK))
    return 18 + original_size + 5 * blocks


def write_stored_member(reader: BinaryIO, writer: BinaryIO, size: int) -> int:
    """Stream `size` bytes from `reader` into one stored gzip member; return the bytes read.

    Reads stop at `size`, so a source that grew is noticed by the caller's hash check, not here.
    """
    writer.write(GZIP_HEADER)
    crc32, done = 0, 0
    while True:
        block = reader.read(min(_MAX_STORED_BLOCK, size - done)) if done < size else b""
        done += len(block)
        final = 1 if done >= size or not block else 0
        writer.write(struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF))
        writer.write(block)
        crc32 = isal_zlib.crc32(block, crc32)
        if final:
            break
    writer.write(struct.pack("<II", crc32 & 0xFFFFFFFF, done & 0xFFFFFFFF))
    return done
