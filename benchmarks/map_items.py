"""Map benchmark: the map-items flow against one running Prefect server, next to a bare loop.

Run from the repo root: `python -m benchmarks.map_items --items 21456 --batch-size 8 --json`.
It writes `--items` JSONL records to a temporary folder, starts a Prefect server, runs a tiny
warm-up job, then for each of two functions (`noop`, and `compute_20ms` whose batch costs 20 ms
of CPU; benchmarks/map_functions.py) times the flow, a bare loop that writes the same output files
with the same durability (each file written atomically, one `syncfs` per batch, then a done
marker: what tasks/engine/checkpoints.py `commit_batch` does on a local store), and a rerun of the
flow, which must run no batch. Then the overlap case: `--overlap-items` files on the GCS emulator
behind a proxy that adds 20 ms to each read, batches at 20 ms of compute that releases the
interpreter lock as a model's does (`kernel_20ms`), next to each
stage alone: the batches computed from memory, and the items fetched by the flow's reader
(`read_chunk`), a batch at a time with a thread per item (at most the engine's I/O threads),
and one after another.

Every job folder must pass `colabflow verify`'s check, and each batch file must hold the bytes
the bare loop (or the compute alone) gives for that batch. `task_runs` counts the flow run's task
runs in the API. With `--json` the last stdout line is one JSON object; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from benchmarks.machine import machine
from benchmarks.map_functions import BATCH_CPU_SECONDS, compute_20ms, kernel_20ms, noop
from tasks.batch_map.outputs import encode_batch
from tasks.storage.local import sync_file_system, write_atomically
from tests.gcs_emulator import BUCKET
from tests.servers import prefect_server, server_environment

if TYPE_CHECKING:
    from tasks.batch_map.models import MapReport
    from tasks.batch_map.parameters import MapJob

Result = TypeVar("Result")
REPO_ROOT = Path(__file__).resolve().parent.parent
WARMUP_ITEMS = 16
FUNCTIONS: dict[str, Callable[[list[dict[str, Any]]], list[int]]] = {"noop": noop, "compute_20ms": compute_20ms}
READ_DELAY_MS = 20
ITEM_BYTES = 4096
ITEMS_PREFIX = "items"
SETTLE_SECONDS = 120.0


def timed(action: Callable[[], Result]) -> tuple[float, Result]:
    """Flush dirty pages, then run `action` once; return its wall time in seconds and its result."""
    os.sync()
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def write_records(path: Path, count: int) -> list[dict[str, Any]]:
    """Write `count` small JSONL records, `item-000000` onwards; return them."""
    records = [{"id": f"item-{index:06d}", "text": f"record {index} of the map benchmark"} for index in range(count)]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return records


def run_bare(items: Path, folder: Path, function: Callable[[list[dict[str, Any]]], list[int]], batch_size: int) -> int:
    """Read the records, then per batch: call, encode, write atomically, `syncfs`, write a done marker."""
    records = [json.loads(line) for line in items.read_bytes().splitlines() if line.strip()]
    batches = 0
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        ids = [str(record["id"]) for record in batch]
        content = encode_batch(ids, function(batch), "jsonl")
        name = f"batch-{batches:06d}"
        write_atomically(folder / "outputs" / f"{name}.jsonl", lambda handle: handle.write(content))
        sync_file_system(folder)
        marker = json.dumps({"batch": name, "items": ids, "sha256": hashlib.sha256(content).hexdigest()}).encode()
        write_atomically(folder / "done" / f"{name}.json", lambda handle: handle.write(marker))
        batches += 1
    return batches


def bare_batches(folder: Path) -> list[tuple[list[str], bytes]]:
    """The bare loop's batches, in order, as (item ids, file bytes)."""
    found = []
    for path in sorted((folder / "outputs").iterdir()):
        content = path.read_bytes()
        found.append(([json.loads(line)["id"] for line in content.splitlines()], content))
    return found


def check_outputs(job_dir: Path, expected: list[tuple[list[str], bytes]]) -> None:
    """Fail unless the job verifies and each batch's file holds exactly the expected bytes."""
    from tasks.engine.verify import verify_job

    check = verify_job(str(job_dir))
    items = sum(len(ids) for ids, _ in expected)
    if check.problems or check.items != items:
        raise RuntimeError(f"{job_dir}: verify found {len(check.problems)} problems in {check.items} items "
                           f"(expected {items}): {[problem.reason for problem in check.problems[:3]]}")
    outputs = {entry["item_id"]: entry["output"] for entry in map(json.loads, (job_dir / "manifest.jsonl").read_text().splitlines())}
    for ids, content in expected:
        if (job_dir / outputs[ids[0]]).read_bytes() != content:
            raise RuntimeError(f"{job_dir}: {outputs[ids[0]]} (items {ids[0]}..{ids[-1]}) differs from the expected bytes")
    if len(list((job_dir / "outputs").iterdir())) != len(expected):
        raise RuntimeError(f"{job_dir}: holds other batch files than the {len(expected)} expected")


def run_flow(request: MapJob, items: int, batches_run: int) -> tuple[float, MapReport, UUID]:
    """Time one run of the flow; fail unless it did every item and ran `batches_run` batches."""
    from flows.map_items import map_items

    seconds, state = timed(lambda: map_items(request, return_state=True))
    report: MapReport = state.result()
    if (report.items_total, len(report.failed), report.batches_run) != (items, 0, batches_run) or report.stopped_reason:
        raise RuntimeError(f"job {request.job!r}: expected {items} items, no failures and {batches_run} batches run, got "
                           f"{report.items_total}, {len(report.failed)} ({report.failed[:2]}) and {report.batches_run}")
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return seconds, report, flow_run_id


def task_figures(flow_run_id: UUID) -> tuple[int, dict[str, float]]:
    """The flow run's task runs, once the API has them all final: their count, and seconds by task."""
    from prefect.client.orchestration import get_client

    from tasks.engine.checkpoints import TASK_RUN_PREFIX
    from tasks.engine.status import read_task_runs

    deadline, previous = time.monotonic() + SETTLE_SECONDS, -1
    with get_client(sync_client=True) as client:
        while True:
            runs = read_task_runs(client, flow_run_id)
            if all(run.state is not None and run.state.is_final() for run in runs) and len(runs) == previous:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"flow run {flow_run_id}: its task runs did not settle in {SETTLE_SECONDS:.0f} s")
            previous = len(runs)
            time.sleep(1)
    seconds: dict[str, float] = defaultdict(float)
    for run in runs:
        task = TASK_RUN_PREFIX if run.name.startswith(TASK_RUN_PREFIX + "-") else run.name.rsplit("-", 1)[0]
        seconds[task] += run.total_run_time.total_seconds()
    return len(runs), {task: round(value, 3) for task, value in sorted(seconds.items())}


def measure_function(scratch: Path, records: list[dict[str, Any]], name: str, batch_size: int) -> dict[str, Any]:
    """Time the flow, the bare loop and a rerun for one function on the same records; check the outputs."""
    from tasks.batch_map.parameters import MapJob

    function = FUNCTIONS[name]
    batches = -(-len(records) // batch_size)
    request = MapJob(items=str(scratch / "items.jsonl"), destination=str(scratch / "out"), job=f"map-{name}",
                     function=f"benchmarks.map_functions:{name}", batch_size=batch_size)
    wall_s, _, flow_run_id = run_flow(request, len(records), batches)
    task_runs, task_seconds = task_figures(flow_run_id)
    bare_s, _ = timed(lambda: run_bare(scratch / "items.jsonl", scratch / f"bare-{name}", function, batch_size))
    rerun_s, rerun, rerun_id = run_flow(request, len(records), 0)
    task_figures(rerun_id)  # let the API catch up before anything else is timed
    check_outputs(scratch / "out" / request.job, bare_batches(scratch / f"bare-{name}"))
    return {
        "wall_s": round(wall_s, 4), "bare_s": round(bare_s, 4), "overhead_ratio": round(wall_s / bare_s, 3),
        "overhead_ms_per_batch": round((wall_s - bare_s) / batches * 1000, 3), "task_runs": task_runs,
        "rerun_s": round(rerun_s, 4), "rerun_vs_first": round(rerun_s / wall_s, 4),
        "rerun_batches_run": rerun.batches_run, "task_seconds": task_seconds,
    }


@contextmanager
def slow_gcs(read_delay_ms: float) -> Iterator[str]:
    """The GCS emulator behind a read-delaying proxy, in a child process; yield the proxy's URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.map_functions", "--read-delay-ms", str(read_delay_ms)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the slow GCS server did not start (exit {process.poll()}); run "
                               "`python -m benchmarks.map_functions` to see why")
        yield url
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def item_bytes(index: int) -> bytes:
    """The content of overlap item `index`: ITEM_BYTES deterministic bytes."""
    return (f"overlap item {index:05d} ".encode() * (ITEM_BYTES // 16 + 1))[:ITEM_BYTES]


def fetch_batches(uris: list[list[str]], threads: int) -> list[bytes]:
    """Read every item through the flow's reader, a batch at a time, `threads` items of a batch at once."""
    from tasks.engine.sources import read_chunk

    with ThreadPoolExecutor(threads) as pool:
        return [data for batch in uris for data in pool.map(read_chunk, batch)]


def measure_overlap(scratch: Path, count: int, batch_size: int) -> dict[str, Any]:
    """Time the flow over slow GCS items next to its stages alone: compute from memory, fetch without compute."""
    from tasks.batch_map.parameters import MapJob
    from tasks.engine.item_attempts import io_thread_count
    from tasks.engine.sources import read_chunk
    from tasks.storage.gcs import GcsStore
    from tasks.storage.stores import StorageAccess

    names = [f"item-{index:05d}.bin" for index in range(count)]
    contents = [item_bytes(index) for index in range(count)]
    store = GcsStore(BUCKET, StorageAccess())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pair: store.write_bytes(f"{ITEMS_PREFIX}/{pair[0]}", pair[1]), zip(names, contents)))
    batches = [[{"id": name, "bytes": data} for name, data in zip(names[start:start + batch_size], contents[start:start + batch_size])]
               for start in range(0, count, batch_size)]
    uris = [[f"gs://{BUCKET}/{ITEMS_PREFIX}/{item['id']}" for item in batch] for batch in batches]
    compute_s, results = timed(lambda: [kernel_20ms(batch) for batch in batches])
    threads = min(batch_size, io_thread_count())
    fetch_s, fetched = timed(lambda: fetch_batches(uris, threads))
    fetch_serial_s, fetched_serially = timed(lambda: [read_chunk(uri) for batch in uris for uri in batch])
    if fetched != contents or fetched_serially != contents:
        raise RuntimeError("the reader returned other bytes than the items written to the emulator")
    request = MapJob(items=f"gs://{BUCKET}/{ITEMS_PREFIX}", destination=str(scratch / "out"), job="map-overlap",
                     function="benchmarks.map_functions:kernel_20ms", batch_size=batch_size)
    wall_s, _, flow_run_id = run_flow(request, count, len(batches))
    task_runs, task_seconds = task_figures(flow_run_id)
    expected = [([str(item["id"]) for item in batch], encode_batch([str(item["id"]) for item in batch], result, "jsonl"))
                for batch, result in zip(batches, results)]
    check_outputs(scratch / "out" / request.job, expected)
    return {
        "items": count, "batches": len(batches), "read_delay_ms": READ_DELAY_MS,
        "compute_ms_per_batch": BATCH_CPU_SECONDS * 1000, "wall_s": round(wall_s, 4), "compute_s": round(compute_s, 4),
        "fetch_s": round(fetch_s, 4), "fetch_threads": threads, "fetch_serial_s": round(fetch_serial_s, 4),
        "overlap_ratio": round(wall_s / max(compute_s, fetch_s), 3), "task_runs": task_runs, "task_seconds": task_seconds,
    }


def measure(scratch: Path, items: int, batch_size: int, overlap_items: int) -> dict[str, Any]:
    """The warm-up job, both functions over the records, then the overlap case on slow GCS."""
    from tasks.batch_map.parameters import MapJob
    from tasks.engine.user_code import trust_caller

    trust_caller()  # as the command line does: the benchmark's own functions are not on a pool's allowlist
    records = write_records(scratch / "items.jsonl", items)
    write_records(scratch / "warmup.jsonl", WARMUP_ITEMS)
    warmup = MapJob(items=str(scratch / "warmup.jsonl"), destination=str(scratch / "out"), job="warmup",
                    function="benchmarks.map_functions:noop", batch_size=batch_size)
    run_flow(warmup, WARMUP_ITEMS, -(-WARMUP_ITEMS // batch_size))
    figures = {name: measure_function(scratch, records, name, batch_size) for name in FUNCTIONS}
    with slow_gcs(READ_DELAY_MS) as url:
        os.environ["STORAGE_EMULATOR_HOST"] = url
        try:
            figures["overlap"] = measure_overlap(scratch, overlap_items, batch_size)
        finally:
            os.environ.pop("STORAGE_EMULATOR_HOST")
    return figures


def run_benchmark(items: int, batch_size: int, overlap_items: int) -> dict[str, Any]:
    """Start a Prefect server in a temporary folder, point this process at it, and measure."""
    load_before, checkout = os.getloadavg()[0], machine()
    with tempfile.TemporaryDirectory(prefix="colabflow-map-bench-") as scratch:
        home = Path(scratch) / "prefect"
        started = time.perf_counter()
        with prefect_server(home) as api_url:
            startup_s = time.perf_counter() - started
            os.environ.update(server_environment(home, api_url))
            figures = measure(Path(scratch), items, batch_size, overlap_items)
            drain_prefect_workers()
    return {
        "items": items, "batch_size": batch_size, "batches": -(-items // batch_size), "startup_s": round(startup_s, 3),
        **figures, "outputs_verified": True, **checkout,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def drain_prefect_workers() -> None:
    """Deliver the runs' queued logs and events while the server is still up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print the figures (with --json as one JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=21456, help="JSONL records mapped by each function (default 21456)")
    parser.add_argument("--batch-size", type=int, default=8, help="items per batch (default 8)")
    parser.add_argument("--overlap-items", type=int, default=2000, help="files on slow GCS for the overlap case (default 2000)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if min(args.items, args.batch_size, args.overlap_items) < 1:
        parser.error(f"need --items, --batch-size and --overlap-items >= 1, got {args.items}, {args.batch_size} "
                     f"and {args.overlap_items}")
    figures = run_benchmark(args.items, args.batch_size, args.overlap_items)
    for name, value in figures.items():
        for key, item in (value.items() if isinstance(value, dict) else [("", value)]):
            print(f"{name + ('.' + key if key else ''):<32}{item}")
    if args.json:
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
