"""Codec benchmark: our gzip codec against every installed gzip library, on the same chunks.

Run from the repo root: `python -m benchmarks.codec --json` (`--mib 2` for a quick run). The
table goes to stdout; with `--json` the last stdout line is one JSON object with the figures.
Timings are wall time, best of three; MB means 10**6 input bytes.

On a machine where the GPU codec runs, it is measured too, with the chunk size from which it
beats the CPU codec on all cores ("gpu_min_chunk_bytes", null when it never does). With
`--results LOCATION` (the jobs' result storage: a directory, gs://… or gdrive://…) that
threshold is recorded for the GPU's name in `.colabflow/gpu-thresholds.json` there, where every
worker's GPU codec reads it (`tasks.compression.gpu_thresholds`). Elsewhere the GPU figures are null.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import random
import sysconfig
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tasks.compression.codecs import IsalGzipCodec
from tasks.compression.gpu_thresholds import THRESHOLDS_KEY, record_threshold
from tasks.compression.nvcomp_codec import NvcompGzipCodec, local_gpu_probe
from tasks.engine.cores import core_count
from tasks.storage.places import open_place

Compress = Callable[[bytes], "bytes | bytearray"]
Run = Callable[[list[bytes]], int]
Clock = Callable[[], float]

MIB = 1024 * 1024
CHUNK_BYTES = 256 * 1024
REPEATS = 3
SEED = 1952
DEFAULT_LEVEL = 6
# The mix: half source code, 40 % JSON logs, the rest already compressed (random to deflate).
SOURCE_SHARE, LOG_SHARE = 0.5, 0.4
_LOG_LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "INFO", "WARNING", "ERROR")
_LOG_EVENTS = ("chunk fetched", "chunk compressed", "upload finished", "retrying upload", "checkpoint saved")
# Chunk sizes at which the GPU codec (every chunk on the GPU) races the CPU codec on all cores.
THRESHOLD_CHUNK_BYTES = (4 * 1024, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024)


@dataclass(frozen=True)
class Measurement:
    """Throughput and ratio of one library at one level."""

    library: str
    level: int
    mb_s: float
    ratio: float

    @property
    def name(self) -> str:
        return f"{self.library}-{self.level}"


def python_source(size: int) -> bytes:
    """The running Python's stdlib .py files (not site-packages), in path order, repeated to `size`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        path for path in root.rglob("*.py")
        if not {"site-packages", "dist-packages"} & set(path.relative_to(root).parts)
    )
    if not files:
        raise FileNotFoundError(f"no .py files under the stdlib directory {str(root)!r}")
    once = b"".join(path.read_bytes() for path in files)
    return (once * (size // len(once) + 1))[:size]


def json_logs(size: int, seed: int) -> bytes:
    """Seeded JSON log lines, like a worker's structured log, cut to `size` bytes."""
    rng = random.Random(seed)
    clock = datetime(2024, 6, 1, tzinfo=timezone.utc).timestamp()
    lines: list[str] = []
    total = 0
    while total < size:
        clock += rng.expovariate(20.0)
        line = json.dumps({
            "ts": datetime.fromtimestamp(clock, timezone.utc).isoformat(timespec="microseconds"),
            "level": rng.choice(_LOG_LEVELS), "worker": rng.randrange(16), "event": rng.choice(_LOG_EVENTS),
            "chunk": f"part-{rng.randrange(100_000):05d}.bin", "bytes": rng.randrange(1 << 20),
            "ms": round(rng.lognormvariate(2.0, 1.0), 3), "request_id": f"{rng.getrandbits(64):016x}",
        }) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def mixed_corpus(size: int, seed: int = SEED) -> bytes:
    """Source code, then JSON logs, then random bytes (what photos or archives look like)."""
    source, logs = int(size * SOURCE_SHARE), int(size * LOG_SHARE)
    return python_source(source) + json_logs(logs, seed) + random.Random(seed).randbytes(size - source - logs)


def split_chunks(data: bytes, chunk_bytes: int) -> list[bytes]:
    """Cut `data` into chunks of `chunk_bytes` (the last may be shorter)."""
    return [data[start : start + chunk_bytes] for start in range(0, len(data), chunk_bytes)]


def restores(member: bytes, original: bytes) -> bool:
    """True when `member` is exactly one gzip member that decompresses to `original`."""
    inflater = zlib.decompressobj(wbits=31)
    return inflater.decompress(member) == original and inflater.eof and not inflater.unused_data


def compress_in_parallel(codec: IsalGzipCodec, chunks: list[bytes]) -> list[bytes]:
    """The batch path of tasks/compression/kind.py: one thread per core maps the codec over the chunks."""
    with ThreadPoolExecutor(core_count()) as pool:
        return list(pool.map(codec.compress, chunks))


def one_thread(compress: Compress) -> Run:
    """A run that compresses the chunks one after another on this thread."""
    return lambda chunks: sum(len(compress(chunk)) for chunk in chunks)


def measure(library: str, level: int, run: Run, chunks: list[bytes], clock: Clock = time.perf_counter) -> Measurement:
    """Best wall time of REPEATS runs over `chunks`, as MB/s and input/output ratio."""
    seconds, produced = math.inf, 0
    for _ in range(REPEATS):
        started = clock()
        produced = run(chunks)
        seconds = min(seconds, clock() - started)
    size = sum(map(len, chunks))
    return Measurement(library, level, round(size / 1e6 / seconds, 1), round(size / produced, 4))


def _gzip_with_wbits(module: Any, level: int) -> Compress:
    return lambda data: module.compress(data, level, wbits=31)


def _libdeflate_gzip(module: Any, level: int) -> Compress:
    return lambda data: module.gzip_compress(data, level)


_OPTIONAL_LIBRARIES = (
    ("isal", "isal.isal_zlib", range(0, 4), _gzip_with_wbits),
    ("libdeflate", "deflate", range(1, 13), _libdeflate_gzip),
    ("zlib-ng", "zlib_ng.zlib_ng", range(1, 10), _gzip_with_wbits),
)


def installed_compressors() -> tuple[list[tuple[str, int, Compress]], list[str]]:
    """zlib level 6 and every level of each installed gzip library, and why others are skipped."""
    found: list[tuple[str, int, Compress]] = [("zlib", 6, lambda data: zlib.compress(data, 6, wbits=31))]
    skipped: list[str] = []
    for library, module_name, levels, bind in _OPTIONAL_LIBRARIES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            skipped.append(f"{library}: skipped, {module_name} is not importable ({error})")
            continue
        found.extend((library, level, bind(module, level)) for level in levels)
    return found, skipped


def measure_ours(chunks: list[bytes]) -> tuple[Measurement, Measurement]:
    """Our default codec on one thread, then through the parallel batch path (output checked)."""
    codec = IsalGzipCodec(DEFAULT_LEVEL)
    if not all(map(restores, compress_in_parallel(codec, chunks), chunks)):
        raise AssertionError("our codec produced a member that does not restore its chunk")
    single = measure(codec.name, DEFAULT_LEVEL, one_thread(codec.compress), chunks)
    parallel = measure(codec.name, DEFAULT_LEVEL, lambda items: sum(map(len, compress_in_parallel(codec, items))), chunks)
    return single, parallel


def gpu_threshold(gpu: Run, cpu: Run, data: bytes, clock: Clock = time.perf_counter) -> int | None:
    """The smallest chunk size at which `gpu` (every chunk on the GPU) beats `cpu`; None if it never does."""
    for size in THRESHOLD_CHUNK_BYTES:
        chunks = split_chunks(data, size)
        if measure("gpu", DEFAULT_LEVEL, gpu, chunks, clock).mb_s >= measure("cpu", DEFAULT_LEVEL, cpu, chunks, clock).mb_s:
            return size
    return None


def codec_run(compress_many: Callable[[list[bytes]], list[bytes]]) -> Run:
    """A run that hands all chunks to one `compress_many` call and counts the output bytes."""
    return lambda chunks: sum(map(len, compress_many(chunks)))


def measure_gpu(data: bytes, chunks: list[bytes], record_in: str | None = None) -> dict[str, Any]:
    """Our GPU codec, every chunk on the GPU, on the same chunks (output checked) and its threshold.

    The threshold is recorded under `record_in` when given. Without a usable GPU the figures are
    null, with the reason.
    """
    probe = local_gpu_probe()
    if not probe.usable or probe.gpu_name is None or probe.nvcomp_version is None:
        return {"gpu_mb_s": None, "gpu_ratio": None, "gpu_device": None, "gpu_min_chunk_bytes": None,
                "gpu_threshold_recorded": None, "gpu_skipped": f"GPU codec cannot run: {probe.reason}"}
    cpu = IsalGzipCodec(DEFAULT_LEVEL)
    codec = NvcompGzipCodec(DEFAULT_LEVEL, probe.gpu_name, probe.nvcomp_version, cpu, min_chunk_bytes=1)
    if not all(map(restores, codec.compress_many(chunks), chunks)):
        raise AssertionError("our GPU codec produced a member that does not restore its chunk")
    result = measure(codec.name, DEFAULT_LEVEL, codec_run(codec.compress_many), chunks)
    threshold = gpu_threshold(codec_run(codec.compress_many), lambda items: sum(map(len, compress_in_parallel(cpu, items))), data)
    recorded = None
    if record_in is not None:
        place = open_place(record_in)
        record_threshold(place, probe.gpu_name, threshold)
        recorded = place.uri(place.key(THRESHOLDS_KEY))
    return {"gpu_mb_s": result.mb_s, "gpu_ratio": result.ratio, "gpu_device": probe.gpu_name,
            "gpu_min_chunk_bytes": threshold, "gpu_threshold_recorded": recorded, "gpu_skipped": None}


def run_benchmark(mib: int, record_in: str | None = None) -> dict[str, Any]:
    """Measure every library and our codecs on `mib` MiB of the mix; return the JSON figures.

    `record_in` is where the GPU's threshold is recorded (the jobs' result storage), if given.
    """
    data = mixed_corpus(mib * MIB)
    chunks = split_chunks(data, CHUNK_BYTES)
    compressors, skipped = installed_compressors()
    results = [measure(library, level, one_thread(compress), chunks) for library, level, compress in compressors]
    single, parallel = measure_ours(chunks)
    zlib6 = results[0]
    return {
        "codec": single.library, "level": single.level, "mb_s": parallel.mb_s, "ratio": single.ratio,
        "zlib6_mb_s": zlib6.mb_s, "zlib6_ratio": zlib6.ratio, "speedup": round(parallel.mb_s / zlib6.mb_s, 2),
        "dominated_by": [r.name for r in results if r.mb_s > single.mb_s and r.ratio > single.ratio],
        "single_thread_mb_s": single.mb_s, "workers": core_count(), "mib": mib,
        "chunks": len(chunks), "chunk_kib": CHUNK_BYTES // 1024,
        "results": [asdict(result) for result in results], "skipped": skipped, **measure_gpu(data, chunks, record_in),
    }


def table(figures: dict[str, Any]) -> str:
    """The figures as a fixed-width table, our codec last, then skipped libraries."""
    rows = [(f"{r['library']}-{r['level']}", r["mb_s"], r["ratio"]) for r in figures["results"]]
    ours = f"{figures['codec']}-{figures['level']} (ours)"
    rows.append((ours + ", 1 thread", figures["single_thread_mb_s"], figures["ratio"]))
    rows.append((ours + f", {figures['workers']} threads", figures["mb_s"], figures["ratio"]))
    lines = [f"{'library-level':<28}{'MB/s':>10}{'ratio':>9}"]
    lines += [f"{name:<28}{speed:>10.1f}{ratio:>9.4f}" for name, speed, ratio in rows]
    gpu = f"nvcomp-deflate-{figures['level']} (ours, GPU)"
    if figures["gpu_mb_s"] is None:
        lines.append(f"{gpu:<28}{'null':>10}{'null':>9}")
    else:
        lines.append(f"{gpu:<28}{figures['gpu_mb_s']:>10.1f}{figures['gpu_ratio']:>9.4f}")
    lines.append(f"speedup over zlib-6: {figures['speedup']}x; dominated by: {figures['dominated_by'] or 'none'}")
    if figures["gpu_device"] is not None:
        threshold = figures["gpu_min_chunk_bytes"]
        wins = "never beats all cores" if threshold is None else f"beats all cores from chunks of {threshold} bytes"
        recorded = f"; recorded in {figures['gpu_threshold_recorded']}" if figures["gpu_threshold_recorded"] else ""
        lines.append(f"GPU: {figures['gpu_device']}; the GPU codec (every chunk on the GPU) {wins}{recorded}")
    return "\n".join(lines + figures["skipped"] + ([figures["gpu_skipped"]] if figures["gpu_skipped"] else []))


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print the table and (with --json) the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64, help="size of the mix in MiB (default 64)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    parser.add_argument("--results", metavar="LOCATION", help="result storage to record the GPU's small-chunk threshold in")
    args = parser.parse_args(argv)
    if args.mib < 1:
        parser.error(f"--mib must be at least 1, got {args.mib}")
    figures = run_benchmark(args.mib, args.results)
    print(table(figures), flush=True)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
