"""Standard gzip members built around any codec's output (RFC 1952)."""

from __future__ import annotations

import zlib

_GZIP_WBITS = 31


def stored_gzip_member(data: bytes) -> bytes:
    """Wrap `data` in one gzip member of stored (uncompressed) deflate blocks.

    Used for incompressible input: it grows by 18 bytes plus 5 per 64 KiB block, the least
    any valid gzip member can add, and plain `gzip -d` still restores it.
    """
    compressor = zlib.compressobj(0, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(data) + compressor.flush()


def stored_member_size(original_size: int) -> int:
    """Size of `stored_gzip_member` output for an input of `original_size` bytes."""
    blocks = max(1, -(-original_size // 65535))
    return 18 + original_size + 5 * blocks
