from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tasks.compression.codecs import IsalGzipCodec, resolve_codec
from tasks.compression.gzip_framing import stored_member_size
from tasks.compression.nvcomp_codec import GpuProbe
from tasks.errors import CodecUnavailableError
from tests.machines import gpu_hidden

TEXT = b"def compress(data):\n    return isal_zlib.compress(data)\n" * 2000


def gunzip(member: bytes) -> bytes:
    """Decompress with the system gzip, an independent implementation."""
    return subprocess.run(["gzip", "-dc"], input=member, capture_output=True, check=True).stdout


@pytest.mark.parametrize("level", range(10))
def test_every_level_gives_one_member_that_system_gzip_restores(level: int) -> None:
    """System gzip restores every level's output byte for byte."""
    member = IsalGzipCodec(level).compress(TEXT)
    subprocess.run(["gzip", "-t"], input=member, check=True)
    assert hashlib.sha256(gunzip(member)).digest() == hashlib.sha256(TEXT).digest()


def test_text_shrinks_and_output_is_deterministic() -> None:
    """Compressible input shrinks, and the same input gives the same bytes (mtime 0)."""
    codec = IsalGzipCodec(6)
    assert len(codec.compress(TEXT)) < len(TEXT) / 10
    assert codec.compress(TEXT) == codec.compress(TEXT)


def test_incompressible_input_is_stored_not_grown() -> None:
    """Random bytes come out as a stored member, the smallest valid gzip."""
    data = os.urandom(300_000)
    member = IsalGzipCodec(6).compress(data)
    assert len(member) == stored_member_size(len(data))
    assert gunzip(member) == data


def test_empty_input_is_a_valid_empty_member() -> None:
    """A 0-byte chunk compresses to a member that restores to nothing."""
    member = IsalGzipCodec(6).compress(b"")
    assert gunzip(member) == b""


def test_many_chunks_come_back_in_order_on_the_cpu() -> None:
    """compress_many gives one member per chunk, in order, each restored by system gzip."""
    chunks = [TEXT[: 1000 * index] for index in range(6)]
    codec = IsalGzipCodec(6)
    assert [gunzip(member) for member in codec.compress_many(chunks)] == chunks
    assert {codec.device_for(len(chunk)) for chunk in chunks} == {"cpu"}


def test_auto_and_cpu_pick_isal_without_a_gpu() -> None:
    """Without a usable GPU, auto and cpu both run ISA-L on the CPU."""
    no_gpu = GpuProbe(False, "no CUDA GPU: test_auto_and_cpu_pick_isal_without_a_gpu")
    for choice in ("auto", "cpu"):
        codec = resolve_codec(choice, 6, probe=no_gpu)  # type: ignore[arg-type]
        assert (codec.name, codec.device, codec.level) == ("isal", "cpu", 6)


def test_gpu_on_this_machine_fails_with_the_reason(tmp_path: Path) -> None:
    """codec=gpu where no GPU is found (hidden on a GPU host) fails at once and says what is missing and what to use."""
    with gpu_hidden(tmp_path), pytest.raises(CodecUnavailableError) as caught:
        resolve_codec("gpu", 6)
    message = str(caught.value)
    assert message.startswith("codec 'gpu' cannot run: no CUDA GPU: ")
    assert message.endswith("; use --codec cpu or --codec auto")
