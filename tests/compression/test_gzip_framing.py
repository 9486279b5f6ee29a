"""gzip framing around raw Deflate: stored members and zlib raw streams, checked by system gzip."""

from __future__ import annotations

import gzip
import subprocess
import zlib
from pathlib import Path

import pytest

from tasks.compression.gzip_framing import (
    frame_raw_deflate,
    stored_deflate,
    stored_gzip_member,
    stored_member_size,
)


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 200_000])
def test_stored_member_restores_and_has_the_predicted_size(size: int) -> None:
    """A stored member restores the bytes and its size matches the formula."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    member = stored_gzip_member(data)
    assert gzip.decompress(member) == data
    assert len(member) == stored_member_size(size)


def test_framing_a_zlib_raw_deflate_stream_gives_a_member_system_gzip_accepts(tmp_path: Path) -> None:
    """Raw deflate from zlib (wbits=-15), framed here, passes `gzip -t` and restores."""
    data = b"colabflow frames raw deflate\n" * 5000
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = compressor.compress(data) + compressor.flush()
    path = tmp_path / "framed.gz"
    path.write_bytes(frame_raw_deflate(raw, zlib.crc32(data), len(data)))
    subprocess.run(["gzip", "-t", str(path)], check=True)
    assert subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout == data


def test_a_wrong_crc_is_caught_by_system_gzip(tmp_path: Path) -> None:
    """The trailer matters: a wrong CRC32 makes `gzip -t` fail."""
    path = tmp_path / "bad.gz"
    path.write_bytes(frame_raw_deflate(stored_deflate(b"abc"), 12345, 3))
    assert subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode != 0
