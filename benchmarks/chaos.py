"""Chaos benchmark: kill -9 the worker and its runs again and again during one deployed job.

Run from the repo root: `python -m benchmarks.chaos --kills 10 --chunks 2000 --json`.
It starts one real Prefect server, runs `colabflow setup` and `prefect deploy` as the docs say,
writes the chunks, builds an undisturbed reference job with the plain stage functions, and starts
the deployment run on a worker. Each time more chunks are done at the destination than at the
last kill, it kills the worker with every descendant (a Colab runtime vanishing), notes the
recipes present, starts a new worker and times the recovery: from the kill until one more chunk
is done. Once the run is Completed, the job is verified and compared with the reference.
A human summary goes to stderr; with `--json` the last stdout line is one JSON object.
The server, every worker and (unless `--keep`) every temporary file are gone at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from subprocess import Popen
from typing import Any
from uuid import UUID

from tasks.destinations import RECIPE_SUFFIX
from tests.conftest import make_chunks
from tests.pool import deploy, kill_machine, start_deployment_run, start_worker
from tests.servers import prefect_server, server_environment, wait_until

JOB = "chaos"
GROWTH_TIMEOUT_S = 300.0
COMPLETION_TIMEOUT_S = 900.0
SETTLE_TIMEOUT_S = 180.0
# A kill lands as soon as a chunk is done, so an attempt rarely finishes more than a batch or two;
# four batches per attempt leaves room before the job could end ahead of the last kill.
BATCHES_PER_ATTEMPT = 4
# Attempts beyond one per kill, so that an unplanned crash shows up in `attempts`
# instead of ending the run as Abandoned.
SPARE_ATTEMPTS = 2
FINAL_STATES = {"Completed", "Failed", "Cancelled", "Abandoned"}
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class KillLog:
    """What happened at each kill."""

    killed_at: list[datetime] = field(default_factory=list)
    recoveries_s: list[float] = field(default_factory=list)
    recipes_at_kills: dict[str, bytes] = field(default_factory=dict)
    ended_before_all_kills: bool = False


def read_recipes(chunks: Path) -> dict[str, bytes]:
    """Every recipe file at the destination, by name."""
    if not chunks.is_dir():
        return {}
    return {path.name: path.read_bytes() for path in chunks.iterdir() if path.name.endswith(RECIPE_SUFFIX)}


def count_recipes(chunks: Path) -> int:
    if not chunks.is_dir():
        return 0
    return sum(1 for path in chunks.iterdir() if path.name.endswith(RECIPE_SUFFIX))


def wait_for_growth(chunks: Path, done: int) -> tuple[int, float]:
    """Wait until more than `done` chunks are done; return how many, and when (monotonic)."""
    count = wait_until(lambda: max(count_recipes(chunks) - done, 0), GROWTH_TIMEOUT_S, 0.05,
                       f"more than {done} chunks done") + done
    return count, time.monotonic()


def kill_repeatedly(env: dict[str, str], scratch: Path, total: int, kills: int, workers: list[Popen[bytes]]) -> KillLog:
    """Kill the newest worker each time the job grew since the last kill, and start the next."""
    chunks, log = scratch / "out" / JOB / "chunks", KillLog()
    done, killed_at = 0, None
    for _ in range(kills):
        if done >= total:
            break
        done, grew_at = wait_for_growth(chunks, done)
        if killed_at is not None:
            log.recoveries_s.append(grew_at - killed_at)
        killed_at = None
        if done >= total:
            break
        kill_machine(workers[-1])
        killed_at = time.monotonic()
        log.killed_at.append(datetime.now(timezone.utc))
        present = read_recipes(chunks)
        for name, content in present.items():
            log.recipes_at_kills.setdefault(name, content)
        done = len(present)
        say(f"kill {len(log.killed_at)}: {done} of {total} chunks done; starting worker {len(workers) + 1}")
        workers.append(start_worker(env, scratch / f"worker-{len(workers) + 1}.log"))
    if killed_at is not None and done < total:
        done, grew_at = wait_for_growth(chunks, done)
        log.recoveries_s.append(grew_at - killed_at)
    log.ended_before_all_kills = len(log.killed_at) < kills
    return log


def run_state(flow_run_id: UUID) -> tuple[str, str]:
    """The run's state name and message."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return (state.name or state.type.value, state.message or "") if state else ("unknown", "")


def wait_for_completion(flow_run_id: UUID) -> None:
    """Wait for a final state; fail with the state's message unless it is Completed."""
    def final_state() -> tuple[str, str] | None:
        state = run_state(flow_run_id)
        return state if state[0] in FINAL_STATES else None

    name, message = wait_until(final_state, COMPLETION_TIMEOUT_S, 1.0, "the run to reach a final state")
    if name != "Completed":
        raise RuntimeError(f"the run ended {name}, not Completed: {message}")


def recovery_phases(flow_run_id: UUID, killed_at: list[datetime]) -> dict[str, float | None]:
    """Median seconds of each recovery step, from the run's state history: kill to Crashed
    (detection), Crashed to Scheduled (reschedule), Scheduled to Running (worker pickup)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(flow_run_id), key=lambda state: state.timestamp)

    def first_after(moment: datetime, state_type: str) -> datetime | None:
        return next((s.timestamp for s in states if s.type.value == state_type and s.timestamp >= moment), None)

    steps: dict[str, list[float]] = {"detect_s": [], "reschedule_s": [], "pickup_s": []}
    for kill in killed_at:
        crashed = first_after(kill, "CRASHED")
        scheduled = crashed and first_after(crashed, "SCHEDULED")
        running = scheduled and first_after(scheduled, "RUNNING")
        for name, (begin, end) in zip(steps, [(kill, crashed), (crashed, scheduled), (scheduled, running)]):
            if begin and end:
                steps[name].append((end - begin).total_seconds())
    return {name: round(statistics.median(values), 1) if values else None for name, values in steps.items()}


def compare_job(scratch: Path, chunk_ids: set[str], recipes_at_kills: dict[str, bytes]) -> dict[str, Any]:
    """Verify the job, and compare it with the reference and with the recipes seen at the kills."""
    from tasks.restore import check_job, read_manifest

    job_dir, reference = scratch / "out" / JOB, scratch / "reference" / JOB / "chunks"
    check = check_job(job_dir)
    entries, _ = read_manifest(job_dir)
    listed = [entry.chunk_id for entry in entries]
    verified = set(listed) - {problem.chunk_id for problem in check.problems}
    members = {path.name: path.read_bytes() for path in reference.glob("*.gz")}
    identical = len(members) == len(chunk_ids) and all(
        (job_dir / "chunks" / name).is_file() and (job_dir / "chunks" / name).read_bytes() == content
        for name, content in members.items()
    )
    final = read_recipes(job_dir / "chunks")
    return {
        "lost": len(chunk_ids - verified), "duplicates": len(listed) - len(set(listed)),
        "identical": identical, "problems": len(check.problems),
        "changed_after_kill": sum(1 for name, content in recipes_at_kills.items() if final.get(name) != content),
    }


def batch_runs(flow_run_id: UUID) -> list[Any]:
    """Every compress-batch task run of the run, page by page: one read returns at most 200."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    runs: list[Any] = []
    of_the_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        while page := client.read_task_runs(flow_run_filter=of_the_run, sort=TaskRunSort.ID_DESC, limit=200,
                                            offset=len(runs)):
            runs += page
    return [run for run in runs if run.name.startswith("compress-batch")]


def server_batch_figures(flow_run_id: UUID, batches: int) -> dict[str, Any]:
    """read_run's batch figures, and the same counted over every page. Task runs reach the server
    as events and are recorded after the run is Completed, so first wait until their number holds
    still across two reads and covers at least the last attempt's `batches`."""
    from prefect.client.orchestration import get_client

    from tasks.status import read_run

    seen: list[int] = []

    def settled() -> list[Any] | None:
        runs = batch_runs(flow_run_id)
        seen.append(len(runs))
        return runs if len(runs) >= batches and seen[-2:-1] == [len(runs)] else None

    try:
        runs, is_settled = wait_until(settled, SETTLE_TIMEOUT_S, 2.0, "batch task runs to settle"), True
    except TimeoutError:
        runs, is_settled = batch_runs(flow_run_id), False
    with get_client(sync_client=True) as client:
        status = read_run(client, flow_run_id)
    return {
        "redone_batches": status.batches_redone, "batches_started": status.batches_started,
        "attempts": status.attempts, "batch_runs": len(runs), "batch_runs_settled": is_settled,
        "unfinished_batch_runs": sum(1 for run in runs if run.state_type is None or run.state_type.value != "COMPLETED"),
    }


def run_job(env: dict[str, str], scratch: Path, args: argparse.Namespace, workers: list[Popen[bytes]]) -> dict[str, Any]:
    """Deploy, start the run, kill its workers, wait for it to complete and measure the damage."""
    from tests.jobs import build_job

    deploy(env, "--crash-after", "40s", "--reschedule-after", "10s",
           "--max-attempts", str(args.kills + 1 + SPARE_ATTEMPTS))
    source = make_chunks(scratch / "source", args.chunks, args.chunk_kib * 1024)
    build_job(source, scratch / "reference", job=JOB)
    say(f"deployed; {args.chunks} chunks of {args.chunk_kib} KiB written, reference built")
    workers.append(start_worker(env, scratch / "worker-1.log"))
    request = {"source": [str(source)], "destination": str(scratch / "out"), "job": JOB, "batch_size": args.batch_size}
    flow_run_id = start_deployment_run(env, json.dumps({"request": request}))
    log = kill_repeatedly(env, scratch, args.chunks, args.kills, workers)
    say(f"{len(log.killed_at)} kills done; waiting for the run to complete")
    wait_for_completion(flow_run_id)
    chunk_ids = {path.relative_to(source).as_posix() for path in source.rglob("*") if path.is_file()}
    return {
        "chunks": args.chunks, "kills": len(log.killed_at), "kills_asked": args.kills,
        "ended_before_all_kills": log.ended_before_all_kills,
        **compare_job(scratch, chunk_ids, log.recipes_at_kills),
        **server_batch_figures(flow_run_id, math.ceil(args.chunks / args.batch_size)),
        "recovery_s_median": round(statistics.median(log.recoveries_s), 1) if log.recoveries_s else None,
        "recovery_s": [round(seconds, 1) for seconds in log.recoveries_s],
        **recovery_phases(flow_run_id, log.killed_at),
        "batch_size": args.batch_size, "chunk_kib": args.chunk_kib,
    }


def stop_workers(workers: list[Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            kill_machine(worker)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """One server, one deployment, one run under repeated kills; everything stopped at the end."""
    scratch = Path(tempfile.mkdtemp(prefix="colabflow-chaos-"))
    workers: list[Popen[bytes]] = []
    try:
        with prefect_server(scratch / "server") as api_url:
            env = server_environment(scratch / "client-home", api_url)
            env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
            os.environ.update(env)  # before Prefect is imported: it reads its settings then
            try:
                figures = run_job(env, scratch, args, workers)
            finally:
                stop_workers(workers)
    finally:
        if args.keep:
            say(f"kept {scratch} (job, reference, worker and server logs)")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return {**figures, "wall_s": round(time.monotonic() - STARTED, 1)}


def targets(figures: dict[str, Any]) -> dict[str, bool]:
    return {
        "lost == 0": figures["lost"] == 0,
        "duplicates == 0": figures["duplicates"] == 0,
        "identical": figures["identical"] is True,
        "redone_batches <= kills": figures["redone_batches"] <= figures["kills"],
        "unfinished_batch_runs <= kills": figures["unfinished_batch_runs"] <= figures["kills"],
        "changed_after_kill == 0": figures["changed_after_kill"] == 0,
    }


def print_summary(figures: dict[str, Any]) -> None:
    for name, value in figures.items():
        print(f"{name:<24}{value}", file=sys.stderr)
    if figures["ended_before_all_kills"]:
        print(f"the job ended after {figures['kills']} of {figures['kills_asked']} kills; "
              "give more --chunks for all of them", file=sys.stderr)
    for name, met in targets(figures).items():
        print(f"target {name:<32}{'met' if met else 'MISSED'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print the figures (with --json as one JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="times the worker is killed (default 10)")
    parser.add_argument("--chunks", type=int, default=2000, help="number of chunk files (default 2000)")
    parser.add_argument("--chunk-kib", type=int, default=16, help="size of each chunk in KiB (default 16)")
    parser.add_argument("--batch-size", type=int, default=5, help="chunks per batch (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print where it is")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if min(args.kills, args.chunk_kib, args.batch_size) < 1:
        parser.error(f"--kills, --chunk-kib and --batch-size must be at least 1, got "
                     f"{args.kills}, {args.chunk_kib} and {args.batch_size}")
    needed = BATCHES_PER_ATTEMPT * args.batch_size * (args.kills + 1)
    if args.chunks < needed:
        parser.error(f"--chunks {args.chunks} is too few for {args.kills} kills with --batch-size "
                     f"{args.batch_size}; give at least {needed}")
    figures = run_benchmark(args)
    print_summary(figures)
    if args.json:
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
