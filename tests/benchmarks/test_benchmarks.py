"""Smoke tests of the benchmarks: tiny runs as subprocesses, plus the corpus and check helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from benchmarks.codec import MIB, mixed_corpus, restores, split_chunks

ROOT = Path(__file__).resolve().parents[2]
CODEC_KEYS = {
    "codec", "level", "mb_s", "ratio", "zlib6_mb_s", "zlib6_ratio", "speedup", "dominated_by",
    "single_thread_mb_s", "results", "gpu_mb_s", "gpu_ratio", "gpu_device", "gpu_min_chunk_bytes", "gpu_skipped",
}
PIPELINE_KEYS = {
    "chunks", "startup_s", "wall_s", "codec_s", "hash_s", "overhead_ms_per_chunk", "rerun_s", "rerun_vs_hash",
}


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m module args` from the repo root, as the docs say to."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=90, check=False
    )


def last_json_line(completed: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON object on the last stdout line of a run that succeeded."""
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return figures


def test_codec_benchmark_prints_figures_for_every_library_and_ours() -> None:
    """A 2 MiB codec run ends with the JSON figures: our codec, zlib-6, every library level, and a null GPU."""
    completed = run_module("benchmarks.codec", "--mib", "2", "--json")
    figures = last_json_line(completed)
    assert CODEC_KEYS <= figures.keys()
    assert (figures["codec"], figures["level"]) == ("isal", 6)
    if figures["gpu_device"] is None:
        assert (figures["gpu_mb_s"], figures["gpu_ratio"], figures["gpu_min_chunk_bytes"]) == (None, None, None)
        assert figures["gpu_skipped"].startswith("GPU codec cannot run: ")
        assert "nvcomp-deflate-6 (ours, GPU)      null     null" in completed.stdout
    else:
        assert figures["gpu_mb_s"] > 0 and figures["gpu_ratio"] > 1 and figures["gpu_skipped"] is None
    assert figures["ratio"] > 1 and figures["zlib6_ratio"] > 1
    assert figures["mb_s"] > 0 and figures["single_thread_mb_s"] > 0
    assert figures["speedup"] == round(figures["mb_s"] / figures["zlib6_mb_s"], 2)
    measured = {(row["library"], row["level"]) for row in figures["results"]}
    assert {("zlib", 6), ("isal", 0), ("isal", 3)} <= measured
    assert set(figures["dominated_by"]) <= {f"{library}-{level}" for library, level in measured}


def test_pipeline_benchmark_reports_a_rerun_that_compresses_nothing() -> None:
    """A 40-chunk pipeline run ends with the JSON figures, including a rerun that reused every chunk."""
    figures = last_json_line(run_module("benchmarks.pipeline", "--chunks", "40", "--chunk-kib", "16", "--json"))
    assert PIPELINE_KEYS <= figures.keys()
    assert figures["chunks"] == 40 and figures["rerun_compressed"] == 0
    assert min(figures[key] for key in ("startup_s", "wall_s", "codec_s", "hash_s", "rerun_s")) > 0
    assert figures["rerun_vs_hash"] == pytest.approx(figures["rerun_s"] / figures["hash_s"], rel=0.2)


def test_codec_benchmark_rejects_an_empty_mix() -> None:
    """--mib 0 fails at once and names the option and the value."""
    completed = run_module("benchmarks.codec", "--mib", "0")
    assert completed.returncode == 2
    assert "--mib must be at least 1, got 0" in completed.stderr


def test_pipeline_benchmark_rejects_too_few_chunks() -> None:
    """--chunks must leave room for the warm-up job; the message says what it got."""
    completed = run_module("benchmarks.pipeline", "--chunks", "2")
    assert completed.returncode == 2
    assert "need --chunks > 2" in completed.stderr and "got 2 and 256" in completed.stderr


def test_mix_is_deterministic_and_holds_each_kind() -> None:
    """The same size gives the same bytes: source code, then JSON logs, then incompressible bytes."""
    data = mixed_corpus(MIB)
    assert data == mixed_corpus(MIB) and len(data) == MIB
    assert b"def " in data[: MIB // 2]
    json.loads(data[MIB // 2 :].split(b"\n")[1])
    tail = data[-MIB // 20 :]
    assert len(zlib.compress(tail)) > len(tail)


def test_split_chunks_keeps_every_byte_in_order() -> None:
    """Chunks have the asked size except the last, and join back to the input."""
    chunks = split_chunks(bytes(range(256)) * 5, 300)
    assert [len(chunk) for chunk in chunks] == [300, 300, 300, 300, 80]
    assert b"".join(chunks) == bytes(range(256)) * 5


def test_restores_accepts_one_exact_member_only() -> None:
    """A member restores its input, but not other input, and not with trailing bytes."""
    member = zlib.compress(b"chunk" * 100, 6, wbits=31)
    assert restores(member, b"chunk" * 100)
    assert not restores(member, b"other")
    assert not restores(member + member, b"chunk" * 100)
