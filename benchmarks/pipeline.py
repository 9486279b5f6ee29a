"""Pipeline benchmark: the compress-chunks flow end to end, against one real local Prefect server.

Run from the repo root: `python -m benchmarks.pipeline --chunks 2000 --chunk-kib 256 --json`.
It writes a deterministic mix of chunk files to a temporary folder, starts a Prefect server,
runs a tiny warm-up job, then times the flow, our codec alone, a single-threaded sha256 of the
source and a rerun (which must compress nothing). Every output is checked to restore its chunk.
With `--json` the last stdout line is one JSON object; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.servers import prefect_server, server_environment

Result = TypeVar("Result")
WARMUP_CHUNKS = 2


def timed(action: Callable[[], Result]) -> tuple[float, Result]:
    """Run `action` once; return its wall time in seconds and its result."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def write_chunks(folder: Path, chunks: list[bytes]) -> None:
    """Write each chunk to its own file, `part-00000.bin` onwards."""
    folder.mkdir(parents=True)
    for index, chunk in enumerate(chunks):
        (folder / f"part-{index:05d}.bin").write_bytes(chunk)


def hash_folder(folder: Path) -> int:
    """sha256 every file of `folder` read from disk, one after another; return the file count."""
    paths = sorted(folder.iterdir())
    for path in paths:
        hashlib.sha256(path.read_bytes()).hexdigest()
    return len(paths)


def check_outputs(job_dir: Path, chunks: list[bytes], restores: Callable[[bytes, bytes], bool]) -> None:
    """Fail unless every chunk's .gz is one gzip member that restores it, and the manifest lists all."""
    for index, chunk in enumerate(chunks):
        member = (job_dir / "chunks" / f"part-{index:05d}.bin.gz").read_bytes()
        if not restores(member, chunk):
            raise RuntimeError(f"{job_dir.name}: part-{index:05d}.bin.gz does not restore its chunk")
    entries = len((job_dir / "manifest.jsonl").read_bytes().splitlines())
    if entries != len(chunks):
        raise RuntimeError(f"{job_dir.name}: manifest lists {entries} chunks, expected {len(chunks)}")


def check_report(report: Any, compressed: int, chunks: int) -> None:
    """Fail unless the job report counts `compressed` new chunks out of `chunks`, none failed."""
    if (report.compressed, report.compressed + report.reused, len(report.failed)) != (compressed, chunks, 0):
        raise RuntimeError(
            f"job {report.job!r}: expected {compressed} compressed of {chunks} and no failures, got "
            f"{report.compressed} compressed, {report.reused} reused, {len(report.failed)} failed"
        )


def measure_flow(scratch: Path, chunk_count: int, chunk_bytes: int) -> dict[str, Any]:
    """Time the flow, a rerun, our codec alone and a plain hash, on the same generated chunks."""
    # Imported only now: Prefect reads its settings (API URL, home) when it is first imported.
    from benchmarks.codec import (
        compress_in_parallel,
        mixed_corpus,
        restores,
        split_chunks,
    )
    from flows.compress_chunks import compress_chunks
    from tasks.compression.codecs import IsalGzipCodec
    from tasks.compression.parameters import CompressJob

    chunks = split_chunks(mixed_corpus(chunk_count * chunk_bytes), chunk_bytes)
    source, destination = scratch / "source", scratch / "destination"
    write_chunks(source, chunks)
    write_chunks(scratch / "warmup", chunks[:WARMUP_CHUNKS])
    os.sync()  # so the flow's fsyncs do not also flush the source just written

    def run(folder: Path, job: str) -> Callable[[], Any]:
        return lambda: compress_chunks(CompressJob(source=[str(folder)], destination=str(destination), job=job))

    check_report(run(scratch / "warmup", "warmup")(), WARMUP_CHUNKS, WARMUP_CHUNKS)
    wall_s, report = timed(run(source, "bench"))
    check_report(report, len(chunks), len(chunks))
    check_outputs(destination / "bench", chunks, restores)
    codec = IsalGzipCodec(6)
    codec_s = min(timed(lambda: compress_in_parallel(codec, chunks))[0] for _ in range(3))
    hash_s = timed(lambda: hash_folder(source))[0]
    rerun_s, rerun = timed(run(source, "bench"))
    check_report(rerun, 0, len(chunks))
    return {
        "chunks": len(chunks), "chunk_kib": chunk_bytes // 1024, "batches": report.batches_total,
        "wall_s": round(wall_s, 4), "codec_s": round(codec_s, 4), "hash_s": round(hash_s, 4),
        "overhead_ms_per_chunk": round((wall_s - codec_s) / len(chunks) * 1000, 3),
        "rerun_s": round(rerun_s, 4), "rerun_vs_hash": round(rerun_s / hash_s, 2),
        "rerun_compressed": rerun.compressed, "rerun_batches_reused": rerun.batches_reused,
        "rerun_chunks_read": rerun.chunks_read,
    }


def drain_prefect_workers() -> None:
    """Deliver the runs' queued logs and events while the server is still up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)


def run_benchmark(chunk_count: int, chunk_bytes: int) -> dict[str, Any]:
    """Start a Prefect server in a temporary folder, point this process at it, and measure."""
    with tempfile.TemporaryDirectory(prefix="colabflow-bench-") as scratch:
        home = Path(scratch) / "prefect"
        started = time.perf_counter()
        with prefect_server(home) as api_url:
            startup_s = time.perf_counter() - started
            os.environ.update(server_environment(home, api_url))
            figures = measure_flow(Path(scratch), chunk_count, chunk_bytes)
            drain_prefect_workers()
    return {"startup_s": round(startup_s, 3), **figures}


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print the figures (with --json as one JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=2000, help="number of chunk files (default 2000)")
    parser.add_argument("--chunk-kib", type=int, default=256, help="size of each chunk in KiB (default 256)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if args.chunks <= WARMUP_CHUNKS or args.chunk_kib < 1:
        parser.error(f"need --chunks > {WARMUP_CHUNKS} and --chunk-kib >= 1, got {args.chunks} and {args.chunk_kib}")
    figures = run_benchmark(args.chunks, args.chunk_kib * 1024)
    for name, value in figures.items():
        print(f"{name:<24}{value}")
    if args.json:
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
