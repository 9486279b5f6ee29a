"""Large-chunk benchmark: peak memory and speed of one big chunk through the streaming path.

Run from the repo root: `python -m benchmarks.large_chunk` (`--size-mib 80` for a quick run).
It writes one seeded chunk to a temporary folder (text from benchmarks.codec's mix and random
blocks, written block by block), then, each in a fresh process, fingerprints it
(`tasks.engine.item_hashes.fingerprint_chunk`) and stores it (`tasks.compression.chunk_codec.compress_and_store` into a local
destination). Baselines from the same run: a process that only imports colabflow (the memory
floor) and gzip-stream's `GZIPCompressedStream` (stdlib zlib) at the same level. The stored
member is checked with the system's `gzip -t` and `gzip -dc | sha256sum`. The last stdout line
is one JSON object; MB means 10**6 input bytes, MiB 2**20.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from gzip_stream import GZIPCompressedStream

from benchmarks.codec import SEED, json_logs, python_source
from tasks.compression.chunk_codec import compress_and_store
from tasks.compression.codecs import STREAM_BLOCK, IsalGzipCodec
from tasks.compression.outputs import CHUNK_SUFFIX
from tasks.engine.cores import core_count
from tasks.engine.item_hashes import fingerprint_chunk
from tasks.engine.job_folder import open_job_folder
from tasks.engine.models import ItemFingerprint, ItemRef
from tasks.storage.stores import StorageAccess

Result = TypeVar("Result")
MIB = 1024 * 1024
BLOCK = MIB
TEXT_POOL_MIB = 4  # of source code and of JSON logs each; text blocks are cut from it
RANDOM_SHARE = 0.25  # of blocks that are random (already-compressed data)
LEVEL = 6
TARGET_RSS_MIB = 256
CHUNK_ID = "large-chunk.bin"
JOB = "bench"


def write_chunk(path: Path, size: int, seed: int) -> str:
    """Write `size` seeded bytes to `path`, one block at a time; return their sha256."""
    rng = random.Random(seed)
    pool = python_source(TEXT_POOL_MIB * MIB) + json_logs(TEXT_POOL_MIB * MIB, seed)
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for start in range(0, size, BLOCK):
            length = min(BLOCK, size - start)
            if rng.random() < RANDOM_SHARE:
                block = rng.randbytes(length)
            else:
                offset = rng.randrange(len(pool) - length)
                block = pool[offset : offset + length]
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def peak_rss_mib() -> float:
    """This process's peak RSS from /proc (VmHWM).

    Not `ru_maxrss`: a child started by (v)fork and exec inherits its parent's high-water mark
    there, so it would report the parent's size, not its own work's.
    """
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(kib) / 1024, 1)


def in_fresh_process(function: Callable[..., Result], *args: Any) -> Result:
    """Run `function(*args)` in a new interpreter (spawn), so its peak RSS is its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def floor_child() -> dict[str, float]:
    """Nothing but this module's imports (colabflow's compress, fetch, destinations, Prefect)."""
    return {"rss_mib": peak_rss_mib()}


def fingerprint_child(source: Path) -> dict[str, Any]:
    """Fingerprint the chunk as the fetch stage does."""
    ref = ItemRef(item_id=CHUNK_ID, uri=source.absolute().as_uri(), size=source.stat().st_size)
    started = time.perf_counter()
    fingerprint = fingerprint_chunk(ref)
    return {"seconds": time.perf_counter() - started, "rss_mib": peak_rss_mib(), "fingerprint": fingerprint}


def store_child(fingerprint: ItemFingerprint, destination: Path) -> dict[str, Any]:
    """Compress and store the chunk as the compress stage does (streamed, above STREAM_THRESHOLD)."""
    started = time.perf_counter()
    recipe = compress_and_store(fingerprint, IsalGzipCodec(LEVEL), open_job_folder(str(destination), JOB), StorageAccess())
    return {"seconds": time.perf_counter() - started, "rss_mib": peak_rss_mib(), "ratio": recipe.ratio}


def gzip_stream_child(source: Path, output: Path) -> dict[str, Any]:
    """The design card's choice: gzip-stream (zlib) streaming the same file at the same level."""
    started = time.perf_counter()
    with source.open("rb") as reader, output.open("wb") as writer:
        shutil.copyfileobj(GZIPCompressedStream(reader, compression_level=LEVEL), writer, STREAM_BLOCK)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_mib": peak_rss_mib(), "ratio": round(source.stat().st_size / output.stat().st_size, 4)}


def check_member(member: Path, sha256: str) -> tuple[bool, bool]:
    """The system gzip's verdict on the member, and whether it decompresses cleanly to `sha256`."""
    tested = subprocess.run(["gzip", "-t", str(member)], capture_output=True, check=False).returncode == 0
    with subprocess.Popen(["gzip", "-dc", str(member)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as unzip:
        summed = subprocess.run(["sha256sum"], stdin=unzip.stdout, capture_output=True, text=True, check=False)
    return tested, unzip.returncode == 0 and summed.stdout.split()[:1] == [sha256]


def machine() -> dict[str, Any]:
    """CPU model and the cores this process may use."""
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")]
    return {"cpu": models[0] if models else "unknown", "cores": core_count()}


def run_benchmark(size: int, seed: int, scratch: Path) -> dict[str, Any]:
    """Generate the chunk, measure the floor, gzip-stream and our path, and check our output."""
    source, destination = scratch / CHUNK_ID, scratch / "destination"
    sha256 = write_chunk(source, size, seed)
    floor = in_fresh_process(floor_child)
    baseline = in_fresh_process(gzip_stream_child, source, scratch / "gzip-stream.gz")
    (scratch / "gzip-stream.gz").unlink()
    fingerprinted = in_fresh_process(fingerprint_child, source)
    if fingerprinted["fingerprint"].sha256 != sha256:
        raise RuntimeError(f"fingerprint_chunk gave sha256 {fingerprinted['fingerprint'].sha256}, the file has {sha256}")
    stored = in_fresh_process(store_child, fingerprinted["fingerprint"], destination)
    gzip_t_ok, sha256_ok = check_member(destination / JOB / "chunks" / (CHUNK_ID + CHUNK_SUFFIX), sha256)
    peak = max(fingerprinted["rss_mib"], stored["rss_mib"])
    mb_per_s, gzip_stream_mb_per_s = round(size / 1e6 / stored["seconds"], 1), round(size / 1e6 / baseline["seconds"], 1)
    return {
        "size_mib": size // MIB, "peak_rss_mib": peak, "floor_rss_mib": floor["rss_mib"],
        "rss_over_floor_mib": round(peak - floor["rss_mib"], 1), "target_rss_mib": TARGET_RSS_MIB,
        "met": peak < TARGET_RSS_MIB, "mb_per_s": mb_per_s, "gzip_stream_mb_per_s": gzip_stream_mb_per_s,
        "speedup_vs_gzip_stream": round(mb_per_s / gzip_stream_mb_per_s, 2), "ratio": stored["ratio"],
        "gzip_t_ok": gzip_t_ok, "sha256_ok": sha256_ok, "machine": machine(),
        "level": LEVEL, "seed": seed, "fingerprint_rss_mib": fingerprinted["rss_mib"],
        "store_rss_mib": stored["rss_mib"], "fingerprint_mb_per_s": round(size / 1e6 / fingerprinted["seconds"], 1),
        "gzip_stream_rss_mib": baseline["rss_mib"], "gzip_stream_ratio": baseline["ratio"],
    }


def table(figures: dict[str, Any]) -> str:
    """The figures for a reader: memory against the floor and target, speed against gzip-stream."""
    rows = [
        ("floor (imports only)", figures["floor_rss_mib"], None, None),
        ("fingerprint_chunk", figures["fingerprint_rss_mib"], figures["fingerprint_mb_per_s"], None),
        ("compress_and_store (isal, ours)", figures["store_rss_mib"], figures["mb_per_s"], figures["ratio"]),
        ("gzip-stream (zlib)", figures["gzip_stream_rss_mib"], figures["gzip_stream_mb_per_s"], figures["gzip_stream_ratio"]),
    ]
    machine, verdict = figures["machine"], {True: "ok", False: "FAILED"}
    head = f"one {figures['size_mib']} MiB chunk, level {figures['level']}, on {machine['cpu']} ({machine['cores']} cores)"
    memory = (f"peak {figures['peak_rss_mib']} MiB = floor + {figures['rss_over_floor_mib']} MiB; "
              f"target < {figures['target_rss_mib']} MiB: {'met' if figures['met'] else 'NOT met'}")
    checks = (f"speedup over gzip-stream: {figures['speedup_vs_gzip_stream']}x; gzip -t: {verdict[figures['gzip_t_ok']]}; "
              f"gzip -dc | sha256sum: {verdict[figures['sha256_ok']]}")
    return "\n".join([
        head, f"{'':<34}{'peak RSS MiB':>14}{'MB/s':>10}{'ratio':>9}",
        *(f"{name:<34}{rss:>14.1f}{'' if speed is None else speed:>10}{'' if ratio is None else ratio:>9}"
          for name, rss, speed, ratio in rows),
        memory, checks,
    ])


def main(argv: list[str] | None = None) -> None:
    """Parse the options, check the disk, run the benchmark, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048, help="size of the chunk in MiB (default 2048)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the chunk's content (default {SEED})")
    args = parser.parse_args(argv)
    if args.size_mib < 1:
        parser.error(f"--size-mib must be at least 1, got {args.size_mib}")
    with tempfile.TemporaryDirectory(prefix="colabflow-large-chunk-") as scratch:
        # At worst: the chunk, our temporary member and the stored member, none smaller than the chunk.
        free_mib = shutil.disk_usage(scratch).free // MIB
        if free_mib < 3 * args.size_mib:
            parser.error(f"--size-mib {args.size_mib} needs {3 * args.size_mib} MiB free in {scratch}, "
                         f"only {free_mib} MiB are; choose a smaller size or set TMPDIR")
        figures = run_benchmark(args.size_mib * MIB, args.seed, Path(scratch))
    print(table(figures))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
