"""Tree benchmark: `colabflow compress` on a tree of real small files, against `gzip -r` and `pigz -r`.

Run from the repo root: `python -m benchmarks.tree --files 10000 --json`.
It copies every regular file of the running Python's stdlib (sources, `__pycache__` bytecode,
test data; not site-packages) into a temporary tree, under `copy-0/`, then `copy-1/` and so on,
until exactly `--files` files exist. Then, for `--rounds` rounds, it times one after another, each
after an `os.sync()`: the CLI of this checkout against a running Prefect server (after a tiny
warm-up job), `gzip -6 -r` and `pigz -6 -r` on copies of the tree. Times are the medians over the
rounds. Last, once, the same CLI cold (no PREFECT_API_URL: it starts its temporary server, in a
PREFECT_HOME that one earlier cold warm-up call has already migrated).
Every `.gz` colabflow wrote must pass `gzip -t`, and each report must count every file compressed.
With `--json` the last stdout line is one JSON object; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers import prefect_server, server_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
WARMUP_FILES = 2
SKIPPED_FOLDERS = frozenset({"site-packages", "dist-packages"})
# `gzip -r` leaves files with these endings alone (and exits 2), so they would not be compared.
GZIP_SUFFIXES = (".gz", ".z", ".tgz", ".taz", "-gz", "-z", "_z")
ARGUMENT_BYTES = 128 * 1024
COLD_JOB = "tree-cold"


def list_files(source: Path) -> list[str]:
    """Relative POSIX paths of the regular files under `source`, sorted, so every run copies the same."""
    found: list[str] = []
    for folder, subfolders, names in os.walk(source):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS]
        for name in names:
            path = Path(folder, name)
            if not path.is_symlink() and path.is_file() and not name.lower().endswith(GZIP_SUFFIXES):
                found.append(path.relative_to(source).as_posix())
    return sorted(found)


def build_tree(source: Path, tree: Path, count: int) -> list[Path]:
    """Copy `source`'s files to `tree/copy-K/<relative path>`, K = 0, 1, ..., until `count` exist."""
    files = list_files(source)
    if not files:
        raise ValueError(f"{source}: found no regular files to copy; expected a folder such as the stdlib")
    written: list[Path] = []
    for index in range(count):
        copy, position = divmod(index, len(files))
        target = tree / f"copy-{copy}" / files[position]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / files[position], target)
        written.append(target)
    return written


def timed_run(command: list[str], **options: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Flush dirty pages, then run `command` once and time it; fail with its stderr unless it exits 0."""
    os.sync()
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])} ... exited {completed.returncode}: {completed.stderr[-3000:]}")
    return seconds, completed


def run_compress(tree: Path, files: int, destination: Path, job: str, env: dict[str, str]) -> float:
    """Time `colabflow compress` of this checkout on `tree`; fail unless it compressed all `files`."""
    command = [sys.executable, "-m", "flows.cli", "compress", str(tree), str(destination), "--job", job, "--json"]
    seconds, completed = timed_run(command, cwd=REPO_ROOT, env=env)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    if report["compressed"] != files or report["failed"]:
        raise RuntimeError(
            f"job {job!r}: expected {files} files compressed and none failed, got "
            f"{report['compressed']} compressed and {len(report['failed'])} failed: {report['failed'][:3]}"
        )
    return seconds


def argument_batches(paths: list[str], budget: int = ARGUMENT_BYTES) -> Iterator[list[str]]:
    """Split `paths` into lists whose arguments take at most `budget` bytes each, as xargs does."""
    batch: list[str] = []
    size = 0
    for path in paths:
        length = len(os.fsencode(path)) + 1
        if batch and size + length > budget:
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def gzip_test(job_dir: Path, files: int) -> bool:
    """Whether `gzip -t` accepts every `.gz` of the job; fail if there is not one per file."""
    members = sorted(str(path) for path in (job_dir / "chunks").rglob("*.gz"))
    if len(members) != files:
        raise RuntimeError(f"{job_dir}: found {len(members)} .gz files, expected {files}")
    checks = (subprocess.run(["gzip", "-t", "--", *batch], capture_output=True, check=False)
              for batch in argument_batches(members))
    return all(check.returncode == 0 for check in checks)


def time_tool(tool: str, tree: Path, copy: Path) -> float | None:
    """Time `tool -6 -r` on a fresh copy of `tree`; None when it is not installed.

    The copy stays until the benchmark ends: deleting 10,000 files just before the next tool's
    run slowed that run by half here (colabflow took 6.5 s first in a round, 10.4 s after a delete).
    """
    if shutil.which(tool) is None:
        return None
    shutil.copytree(tree, copy)
    return timed_run([tool, "-6", "-r", str(copy)])[0]


def time_cold(scratch: Path, tree: Path, files: int, warmup: Path) -> float:
    """Time the CLI with its own temporary server, in a PREFECT_HOME that one warm-up call has migrated."""
    env = server_environment(scratch / "prefect-cold")
    run_compress(warmup, WARMUP_FILES, scratch / "out-cold", "warmup", env)
    return run_compress(tree, files, scratch / "out-cold", COLD_JOB, env)


def warm_job(round_number: int) -> str:
    """The job name of one round's run against the running server."""
    return f"tree-warm-{round_number}"


def time_rounds(scratch: Path, tree: Path, files: int, warmup: Path, rounds: int) -> list[dict[str, float | None]]:
    """Each round times colabflow against a running server, `gzip -6 -r` and `pigz -6 -r`.

    The machine is shared and its speed drifts (the same run took 7.6 to 11.9 s within minutes),
    so the tools alternate, and each round starts with the next one. The server stays up between
    rounds, idle while gzip and pigz run.
    """
    home = scratch / "prefect-warm"
    timings: list[dict[str, float | None]] = []
    with prefect_server(home) as api_url:
        env = server_environment(home, api_url)
        run_compress(warmup, WARMUP_FILES, scratch / "out-warm", "warmup", env)
        runs = {
            "colabflow": lambda number: run_compress(tree, files, scratch / "out-warm", warm_job(number), env),
            "gzip": lambda number: time_tool("gzip", tree, scratch / f"gzip-{number}"),
            "pigz": lambda number: time_tool("pigz", tree, scratch / f"pigz-{number}"),
        }
        for round_number in range(rounds):
            timings.append({tool: runs[tool](round_number) for tool in rotated(list(runs), round_number)})
    return timings


def rotated(tools: list[str], round_number: int) -> list[str]:
    """The tools in the order a round runs them: each round starts one further along, so none is always first."""
    shift = round_number % len(tools)
    return tools[shift:] + tools[:shift]


def rounded(seconds: float | None) -> float | None:
    """Seconds to the millisecond; None stays None (a tool that is not installed)."""
    return None if seconds is None else round(seconds, 3)


def median_of(timings: list[dict[str, float | None]], tool: str) -> float | None:
    """The median time of `tool` over the rounds; None when it is not installed."""
    values = [timing[tool] for timing in timings]
    return None if None in values else statistics.median(value for value in values if value is not None)


def ratio(baseline: float | None, ours: float) -> float | None:
    """How many times longer the baseline took than colabflow; None without a baseline."""
    return None if baseline is None else round(baseline / ours, 3)


def measure(scratch: Path, files: int, rounds: int) -> dict[str, Any]:
    """Build the tree, time `rounds` rounds of colabflow, gzip and pigz, then colabflow cold; check the output.

    Times are medians over the rounds; the ratios divide the medians.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tree, warmup = scratch / "tree", scratch / "warmup"
    sizes = [path.stat().st_size for path in build_tree(stdlib, tree, files)]
    build_tree(stdlib, warmup, WARMUP_FILES)
    for tool in ("gzip", "pigz"):
        if shutil.which(tool) is None:
            print(f"note: {tool} is not on PATH, so {tool}_s and vs_{tool} are null "
                  f"(install it with `apt-get install -y {tool}`)", file=sys.stderr)
    timings = time_rounds(scratch, tree, files, warmup, rounds)
    cold_s = time_cold(scratch, tree, files, warmup)
    jobs = [scratch / "out-warm" / warm_job(number) for number in range(rounds)] + [scratch / "out-cold" / COLD_JOB]
    gzip_t_ok = all(gzip_test(job_dir, files) for job_dir in jobs)
    colabflow_s = median_of(timings, "colabflow")
    assert colabflow_s is not None
    gzip_s, pigz_s = median_of(timings, "gzip"), median_of(timings, "pigz")
    return {
        "files": files, "bytes": sum(sizes), "median_file_bytes": statistics.median_low(sizes), "rounds": rounds,
        "colabflow_s": round(colabflow_s, 3), "cold_s": round(cold_s, 3),
        "gzip_s": rounded(gzip_s), "pigz_s": rounded(pigz_s),
        "vs_gzip": ratio(gzip_s, colabflow_s), "vs_pigz": ratio(pigz_s, colabflow_s),
        "colabflow_rounds_s": [rounded(timing["colabflow"]) for timing in timings],
        "gzip_t_ok": gzip_t_ok, "cpu_count": len(os.sched_getaffinity(0)),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print the figures (with --json as one JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10000, help="number of files in the tree (default 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of colabflow, gzip and pigz; medians are reported (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if args.files < 1:
        parser.error(f"need --files >= 1, got {args.files}")
    if args.rounds < 1:
        parser.error(f"need --rounds >= 1, got {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="colabflow-tree-") as scratch:
        figures = measure(Path(scratch), args.files, args.rounds)
    for name, value in figures.items():
        print(f"{name:<20}{value}")
    if args.json:
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
