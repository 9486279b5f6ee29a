"""Iterate benchmark: what checkpoints cost a long iterative job, and how fast a killed one resumes.

Run from the repo root: `python -m benchmarks.iterate --state-mib 100 --json`.
The program (benchmarks/iterate_program.py) holds `--state-mib` MiB of float32 state; each step
changes 1/16 of it in place and then sleeps out the rest of `--step-ms`, as a GPU step leaves the
CPU free. "Once a minute" is scaled: a minute lasts `--scale` seconds, and each run lasts
`--checkpoints` + 0.5 such minutes of steps, so the interval and the run shrink in proportion.

1. Overhead: `run_loop` three times in this process, the same steps each time: with no checkpoint
   but the final one (the baseline), with a checkpoint each scaled minute written before the
   next step (sync), and written on the writer's thread while the steps go on (async). All three
   write the final checkpoint, so it cancels out of `wall - baseline wall`; it is also reported.
   `held_ms` is how long the loop stood still at each checkpoint: the longest step-to-step gaps,
   one per checkpoint, less the median gap. The share measured at the
   scaled interval overstates a real minute's, since a checkpoint costs the same whatever the
   interval; `share_at_one_a_minute` puts the same cost per checkpoint against 60 s of steps.
2. State load: the sync run's last checkpoint, read with `read_checkpoint` and `decode_state`,
   against plain `open().read()` of the same files, each after `os.sync()` and
   `POSIX_FADV_DONTNEED` on the files (`resident_after_evict` says how many pages stayed cached),
   then both again warm. The median of `--rounds` of each.
3. Pool (`--no-pool` skips it): benchmarks/iterate_pool.py.

With `--json` the last stdout line is one JSON object; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import math
import mmap
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.machine import machine

PROGRAM = "benchmarks.iterate_program:StateProgram"
MINUTE_S = 60.0
MB = 1e6
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_LIBC.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]


@dataclass
class CheckpointClock:
    """The loop's observer: when each step ended, and how many checkpoints became durable."""

    step_ends: list[float] = field(default_factory=list)
    durable: int = 0

    @property
    def last_step_at(self) -> float:
        return self.step_ends[-1]

    def after_step(self, iteration: int, metrics: dict[str, float], loop: object) -> None:
        self.step_ends.append(time.perf_counter())

    def after_checkpoint(self, name: str) -> None:
        self.durable += 1

    def held_s(self, checkpoints: int) -> list[float]:
        """How much longer than a usual step the `checkpoints` longest step-to-step gaps took: the loop
        stands still there for the snapshot (and, written synchronously, for the whole write)."""
        gaps = [later - earlier for earlier, later in zip(self.step_ends, self.step_ends[1:])]
        usual = statistics.median(gaps) if gaps else 0.0
        return sorted(gap - usual for gap in gaps)[-checkpoints:] if checkpoints else []


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_mode(loops: Path, mode: str, params: dict[str, str], steps: int, interval_s: float) -> dict[str, Any]:
    """One run of the loop: `baseline` (final checkpoint only), `sync` or `async` checkpoints every `interval_s`."""
    from tasks.engine.job_folder import open_job_folder
    from tasks.iterations.loop import LoopPlan, run_loop
    from tasks.iterations.models import LoopState
    from tasks.iterations.program import build_program, load_program_class

    program = build_program(load_program_class(PROGRAM), PROGRAM, params, 0)
    plan = LoopPlan(iterations=steps, every_iterations=None, asynchronous=mode == "async",
                    every_seconds=None if mode == "baseline" else interval_s)
    identity: dict[str, Any] = {"program": PROGRAM, "params": params, "seed": 0}
    clock = CheckpointClock()
    os.sync()
    started = time.perf_counter()
    loop, reason, written = run_loop(program, PROGRAM, identity, open_job_folder(str(loops), mode), plan,
                                     LoopState(iterations_done=0), lambda: None, clock)
    ended = time.perf_counter()
    if reason != "completed" or loop.iterations_done != steps:
        raise RuntimeError(f"{mode} run stopped ({reason}) after {loop.iterations_done} of {steps} steps")
    held = clock.held_s(len(written) - 1)  # the final checkpoint comes after the last step
    return {"wall_s": round(ended - started, 3), "checkpoints": len(written) - 1,
            "held_ms_median": round(statistics.median(held) * 1000, 2) if held else None,
            "held_ms_max": round(max(held) * 1000, 2) if held else None,
            "final_checkpoint_s": round(ended - clock.last_step_at, 3)}


def measure_overhead(loops: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The three runs, then each checkpointing run's cost against the baseline."""
    params = {"state_mib": str(args.state_mib), "step_ms": str(args.step_ms)}
    steps = math.ceil((args.checkpoints + 0.5) * args.scale / (args.step_ms / 1000))
    runs = {mode: run_mode(loops, mode, params, steps, args.scale) for mode in ("baseline", "sync", "async")}
    baseline = runs["baseline"]["wall_s"]
    for mode in ("sync", "async"):
        run = runs[mode]
        extra = run["wall_s"] - baseline
        per = extra / run["checkpoints"] if run["checkpoints"] else math.nan
        run.update(overhead_s=round(extra, 3), overhead_share=round(extra / run["wall_s"], 5),
                   overhead_s_per_checkpoint=round(per, 4), share_at_one_a_minute=round(per / (MINUTE_S + per), 5))
    return {"steps": steps, "step_ms": args.step_ms, "interval_s": args.scale, **runs}


def resident_share(path: Path) -> float:
    """The share of the file's pages in the page cache now (mincore on a read-only mapping)."""
    size = path.stat().st_size
    if size == 0:
        return 0.0
    pages = -(-size // mmap.PAGESIZE)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        address = _LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, descriptor, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            vector = (ctypes.c_ubyte * pages)()
            if _LIBC.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
            return sum(page & 1 for page in vector) / pages
        finally:
            _LIBC.munmap(address, size)
    finally:
        os.close(descriptor)


def evict(paths: list[Path]) -> float:
    """Write back dirty pages, drop the files' pages from the cache; the share of pages still cached."""
    os.sync()
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
    total = sum(path.stat().st_size for path in paths)
    return sum(resident_share(path) * path.stat().st_size for path in paths) / total


def read_plainly(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            handle.read()


def cpu_parts(folder: Any, name: str, paths: dict[str, Path]) -> dict[str, float]:
    """Milliseconds of the load's parts on bytes already cached: the hashed read, the tensor views, decoding."""
    from tasks.iterations.checkpoints import (
        TENSORS_NAME,
        checkpoint_key,
        read_checkpoint,
    )
    from tasks.iterations.state_format import decode_state
    from tasks.iterations.tensor_file import read_hashed, tensors_of

    key = folder.key(checkpoint_key(name, TENSORS_NAME))
    buffer, _ = read_hashed(folder.store, key)
    encoded = read_checkpoint(folder, name).encoded
    return {"sha256_ms": round(timed(lambda: hashlib.sha256(paths["tensors"].read_bytes())) * 1000, 1),
            "read_hashed_ms": round(timed(lambda: read_hashed(folder.store, key)) * 1000, 1),
            "tensor_views_ms": round(timed(lambda: tensors_of(buffer, name)) * 1000, 1),
            "decode_ms": round(timed(lambda: decode_state(encoded, copy=False)) * 1000, 1)}


def measure_load(loops: Path, job: str, rounds: int) -> dict[str, Any]:
    """`read_checkpoint` + `decode_state` of the job's last checkpoint against a plain read, cold then warm."""
    from tasks.engine.job_folder import open_job_folder
    from tasks.iterations.checkpoints import (
        DONE_NAME,
        STATE_NAME,
        TENSORS_NAME,
        checkpoint_key,
        checkpoint_names,
        read_checkpoint,
    )
    from tasks.iterations.state_format import decode_state

    folder = open_job_folder(str(loops), job)
    name = checkpoint_names(folder)[0]
    files = {role: loops / job / checkpoint_key(name, file)
             for role, file in (("done", DONE_NAME), ("state", STATE_NAME), ("tensors", TENSORS_NAME))}
    paths = list(files.values())
    size = sum(path.stat().st_size for path in paths)
    load = lambda: decode_state(read_checkpoint(folder, name).encoded, copy=False)  # as resume_program does
    read = lambda: read_plainly(paths)
    cold: dict[str, list[float]] = {"load": [], "read": []}
    resident = []
    for _ in range(rounds):
        for kind, action in (("load", load), ("read", read)):
            resident.append(evict(paths))
            cold[kind].append(timed(action))
    warm = {kind: statistics.median(timed(action) for _ in range(rounds))
            for kind, action in (("load", load), ("read", read))}
    speeds = {f"{kind}_mb_s": round(size / MB / statistics.median(times), 1) for kind, times in cold.items()}
    return {"checkpoint": name, "bytes": size, "rounds": rounds, **speeds,
            "load_vs_disk": round(speeds["load_mb_s"] / speeds["read_mb_s"], 3),
            "resident_after_evict": round(max(resident), 4),
            "warm_load_mb_s": round(size / MB / warm["load"], 1), "warm_read_mb_s": round(size / MB / warm["read"], 1),
            "warm_load_vs_read": round(warm["read"] / warm["load"], 3), "warm_cpu": cpu_parts(folder, name, files)}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Overhead and load in a temporary folder under `--dir`, then the pool phase; the figures."""
    from tasks.engine.user_code import trust_caller

    trust_caller()  # as the command line does: the benchmark's program is not on a pool's allowlist
    load_before, checkout = os.getloadavg(), machine()
    figures: dict[str, Any] = {"state_mib": args.state_mib, "scale_s_per_minute": args.scale}
    with tempfile.TemporaryDirectory(prefix="colabflow-iterate-bench-", dir=args.dir) as scratch:
        figures["overhead"] = measure_overhead(Path(scratch) / "loops", args)
        figures["load"] = measure_load(Path(scratch) / "loops", "sync", args.rounds)
        figures["load_average_before_pool"] = [round(value, 2) for value in os.getloadavg()]
        if args.pool:
            from benchmarks.iterate_pool import measure_pool

            figures["pool"] = measure_pool(Path(scratch), args)
    return {**figures, "targets": targets(figures), **checkout,
            "load_average": {"before": [round(value, 2) for value in load_before],
                             "after": [round(value, 2) for value in os.getloadavg()]}}


def targets(figures: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets: async overhead <= 1 % at one checkpoint a minute; load >= 80 % of the disk's speed."""
    return {"async_overhead_at_one_a_minute <= 0.01": figures["overhead"]["async"]["share_at_one_a_minute"] <= 0.01,
            "async_overhead_at_scaled_interval <= 0.01": figures["overhead"]["async"]["overhead_share"] <= 0.01,
            "load_vs_disk >= 0.8": figures["load"]["load_vs_disk"] >= 0.8}


def print_table(figures: dict[str, Any], prefix: str = "") -> None:
    for name, value in figures.items():
        if isinstance(value, dict):
            print_table(value, f"{prefix}{name}.")
        else:
            print(f"{prefix + name:<52}{value}")


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print the figures (with --json as one JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-mib", type=int, default=100, help="MiB of float32 state (default 100)")
    parser.add_argument("--step-ms", type=float, default=50.0, help="fixed time of a step, in ms (default 50)")
    parser.add_argument("--scale", type=float, default=6.0, help="seconds a scaled minute lasts (default 6; 60: unscaled)")
    parser.add_argument("--checkpoints", type=int, default=10, help="checkpoints in each overhead run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="cold and warm loads and reads timed (default 3)")
    parser.add_argument("--pool", action=argparse.BooleanOptionalAction, default=True,
                        help="also time a kill and resume on a real pool (default on)")
    parser.add_argument("--crash-after", default="40s", help="pool: colabflow setup --crash-after (default 40s)")
    parser.add_argument("--reschedule-after", default="10s",
                        help="pool: colabflow setup --reschedule-after (default 10s)")
    parser.add_argument("--dir", help="where the temporary folder goes (default: the system's temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if min(args.state_mib, args.checkpoints, args.rounds) < 1 or min(args.step_ms, args.scale) <= 0:
        parser.error(f"need --state-mib, --checkpoints and --rounds >= 1 and --step-ms, --scale > 0, got "
                     f"{args.state_mib}, {args.checkpoints}, {args.rounds}, {args.step_ms} and {args.scale}")
    if args.scale < 2 * args.step_ms / 1000:
        parser.error(f"--scale {args.scale} s is shorter than two steps of --step-ms {args.step_ms}")
    figures = run_benchmark(args)
    print_table(figures)
    if args.json:
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
