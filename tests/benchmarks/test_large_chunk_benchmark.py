"""Smoke test of the large-chunk benchmark: an 80 MiB chunk, past STREAM_THRESHOLD, so streamed."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.large_chunk import MIB, check_member
from tasks.compression.chunk_codec import STREAM_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]
SIZE_MIB = 80


def test_large_chunk_streams_in_bounded_memory_and_restores() -> None:
    """An 80 MiB chunk is stored as a member the system gzip restores, with peak RSS under 256 MiB."""
    assert SIZE_MIB * MIB > STREAM_THRESHOLD
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.large_chunk", "--size-mib", str(SIZE_MIB)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures["size_mib"] == SIZE_MIB
    assert figures["gzip_t_ok"] and figures["sha256_ok"]
    assert figures["peak_rss_mib"] < 256 and figures["met"]
    assert figures["floor_rss_mib"] <= figures["peak_rss_mib"]


def test_check_member_rejects_a_truncated_member_and_other_content(tmp_path: Path) -> None:
    """The independent check fails a cut-off member, and a whole member of different bytes."""
    member = tmp_path / "member.gz"
    member.write_bytes(gzip.compress(b"chunk" * 1000))
    assert check_member(member, hashlib.sha256(b"chunk" * 1000).hexdigest()) == (True, True)
    assert check_member(member, hashlib.sha256(b"other").hexdigest()) == (True, False)
    member.write_bytes(member.read_bytes()[:-8])
    assert check_member(member, hashlib.sha256(b"chunk" * 1000).hexdigest()) == (False, False)
