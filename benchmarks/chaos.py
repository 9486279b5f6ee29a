"""Chaos benchmark: kill -9 the worker and its runs again and again during one deployed job.

Run from the repo root: `python -m benchmarks.chaos --kills 10 --chunks 2000 --json`.
It starts one real Prefect server, runs `colabflow setup` and `prefect deploy` as the docs say,
writes the chunks, builds an undisturbed reference job with the plain stage functions, and starts
the deployment run on a worker. Each time more chunks are done at the destination than at the
last kill, it kills the worker with every descendant (a Colab runtime vanishing), notes the
recipes present, starts a new worker and times the recovery: from the kill until one more chunk
is done. Once the run is Completed, the job is verified and compared with the reference.

A kill also waits until the server has a heartbeat of the attempt it kills: detection starts
from a heartbeat, and an attempt killed before its first one arrives is never recovered
(docs/benchmarks.md, "Chaos"). `attempts_chunk_before_heartbeat` counts the attempts whose
first new chunk was written before the server received that heartbeat.

The chunks are read from a fake GitHub (tests/github_fake.py) whose proxy holds each attempt at a
gate, BATCHES_PER_ATTEMPT batches past the last one, until its kill has landed: the job cannot
end before the last kill, whatever the machine's speed, and a kill still lands where the attempt
happens to be once a chunk is done.

A human summary goes to stderr; with `--json` the last stdout line is one JSON object.
The server, every worker and (unless `--keep`) every temporary file are gone at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from subprocess import Popen
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pytest_httpserver import HTTPServer

from tests.conftest import make_chunks
from tests.fault_proxy import Hold
from tests.github_fake import files_under, gated_repository
from tests.pool import (
    deploy,
    kill_machine,
    recipes_at,
    start_deployment_run,
    start_worker,
)
from tests.servers import prefect_server, server_environment, wait_until

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

JOB = "chaos"
GROWTH_TIMEOUT_S = 300.0
COMPLETION_TIMEOUT_S = 900.0
SETTLE_TIMEOUT_S = 180.0
# A kill lands as soon as a chunk is done, so an attempt rarely finishes more than a batch or two;
# attempt k waits at a gate 4 * (k + 1) batches in, so each has room for at least four.
BATCHES_PER_ATTEMPT = 4
# Attempts beyond one per kill, so that an unplanned crash shows up in `attempts`
# instead of ending the run as Abandoned.
SPARE_ATTEMPTS = 2
FINAL_STATES = {"Completed", "Failed", "Cancelled", "Abandoned"}
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Chaos:
    """One deployed run under repeated kills, and what happened at each kill."""

    env: dict[str, str]
    scratch: Path
    total: int
    client: SyncPrefectClient
    workers: list[Popen[bytes]] = field(default_factory=list)
    gates: tuple[Hold, ...] = ()
    flow_run_id: UUID | None = None
    killed_at: list[datetime] = field(default_factory=list)
    recoveries_s: list[float] = field(default_factory=list)
    recipes_at_kills: dict[str, bytes] = field(default_factory=dict)
    chunk_before_heartbeat: int = 0

    @property
    def chunks(self) -> Path:
        return self.scratch / "out" / JOB / "chunks"

    def start_worker(self) -> None:
        self.workers.append(start_worker(self.env, self.scratch / f"worker-{len(self.workers) + 1}.log"))


def read_recipes(chunks: Path) -> dict[str, bytes]:
    """Every recipe in the job folder's journals (the chunks done), by chunk id."""
    return recipes_at(chunks.parent)


def count_recipes(chunks: Path) -> int:
    return len(recipes_at(chunks.parent))


def run_state(client: SyncPrefectClient, flow_run_id: UUID) -> tuple[str, str]:
    """The run's state name and message."""
    state = client.read_flow_run(flow_run_id).state
    return (state.name or state.type.value, state.message or "") if state else ("unknown", "")


def first_heartbeat_since(client: SyncPrefectClient, flow_run_id: UUID, since: datetime) -> float | None:
    """When (epoch seconds) the server received the run's first heartbeat that occurred after
    `since`, or None while it has recorded none."""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventOrder,
        EventResourceFilter,
    )

    heartbeats = EventFilter(
        occurred=EventOccurredFilter.model_validate({"since": since}),
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]), order=EventOrder.ASC,
    )
    page = client.read_events(heartbeats, limit=1)
    return page.events[0].received.timestamp() if page.events else None


def first_new_recipe_at(chunks: Path, known: set[str]) -> float:
    """When (epoch seconds) the earliest journal naming a chunk not in `known` was written."""
    journals = (chunks.parent / "recipes").glob("*.jsonl")
    return min(journal.stat().st_mtime for journal in journals
               if any(json.loads(line)["chunk_id"] not in known for line in journal.read_bytes().splitlines()))


def wait_for_attempt(chaos: Chaos, known: set[str], since: datetime) -> tuple[int, float]:
    """Wait until the server has the attempt's heartbeat and more chunks than `known` are done;
    return the chunks done and when the first new one was written. Counts the attempts whose
    first new chunk came before the server received the heartbeat: a kill then strands the run."""
    assert chaos.flow_run_id is not None
    flow_run_id = chaos.flow_run_id
    try:
        heartbeat_at: float = wait_until(lambda: first_heartbeat_since(chaos.client, flow_run_id, since),
                                         GROWTH_TIMEOUT_S, 0.05, "a heartbeat of the attempt")
        grown: int = wait_until(lambda: max(count_recipes(chaos.chunks) - len(known), 0), GROWTH_TIMEOUT_S, 0.05,
                                f"more than {len(known)} chunks done")
    except TimeoutError as error:
        state, message = run_state(chaos.client, flow_run_id)
        heard = first_heartbeat_since(chaos.client, flow_run_id, since) is not None
        raise RuntimeError(f"{error}; the run is {state} ({message or 'no message'}), and the server has "
                           f"{'a' if heard else 'no'} heartbeat of it since {since:%H:%M:%S}") from error
    first_chunk_at = first_new_recipe_at(chaos.chunks, known)
    chaos.chunk_before_heartbeat += first_chunk_at < heartbeat_at
    return len(known) + grown, first_chunk_at


def kill_repeatedly(chaos: Chaos, kills: int) -> None:
    """Kill the newest worker each time the job grew since the last kill, open the gate its attempt
    stops at, and start the next worker. A recovery ends when the first recipe after the kill was
    written (its mtime)."""
    since, known = datetime.now(timezone.utc), set[str]()
    for gate in chaos.gates[:kills]:
        first_chunk_at = wait_for_attempt(chaos, known, since)[1]
        if chaos.killed_at:
            chaos.recoveries_s.append(first_chunk_at - since.timestamp())
        kill_machine(chaos.workers[-1])
        gate.release()
        since = datetime.now(timezone.utc)
        chaos.killed_at.append(since)
        present = read_recipes(chaos.chunks)
        for name, content in present.items():
            chaos.recipes_at_kills.setdefault(name, content)
        known = set(present)
        say(f"kill {len(chaos.killed_at)}: {len(known)} of {chaos.total} chunks done; "
            f"starting worker {len(chaos.workers) + 1}")
        chaos.start_worker()
    chaos.recoveries_s.append(wait_for_attempt(chaos, known, since)[1] - since.timestamp())


def wait_for_completion(client: SyncPrefectClient, flow_run_id: UUID) -> None:
    """Wait for a final state; fail with the state's message unless it is Completed."""
    def final_state() -> tuple[str, str] | None:
        state = run_state(client, flow_run_id)
        return state if state[0] in FINAL_STATES else None

    name, message = wait_until(final_state, COMPLETION_TIMEOUT_S, 1.0, "the run to reach a final state")
    if name != "Completed":
        raise RuntimeError(f"the run ended {name}, not Completed: {message}")


def recovery_phases(
    client: SyncPrefectClient, flow_run_id: UUID, killed_at: list[datetime]
) -> dict[str, float | None]:
    """Median seconds of each recovery step, from the run's state history: kill to Crashed
    (detection), Crashed to Scheduled (reschedule), Scheduled to Running (worker pickup)."""
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
    from tasks.compression.restore import check_job, read_manifest
    from tasks.engine.job_folder import open_job_location

    job_dir, reference = scratch / "out" / JOB, scratch / "reference" / JOB / "chunks"
    check = check_job(job_dir)
    entries, _ = read_manifest(open_job_location(str(job_dir)))
    listed = [entry.chunk_id for entry in entries]
    verified = set(listed) - {problem.item_id for problem in check.problems}
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


def batch_runs(client: SyncPrefectClient, flow_run_id: UUID) -> list[Any]:
    """Every batch task run (task unit) of the run, page by page: one read returns at most 200."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    from tasks.engine.checkpoints import (
        TASK_RUN_PREFIX,  # imports Prefect: only once its API URL is set
    )

    runs: list[Any] = []
    of_the_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    while page := client.read_task_runs(flow_run_filter=of_the_run, sort=TaskRunSort.ID_DESC, limit=200,
                                        offset=len(runs)):
        runs += page
    return [run for run in runs if run.name.startswith(TASK_RUN_PREFIX)]


def batches_run_again(runs: list[Any]) -> int:
    """Batches that a later attempt ran to completion (Completed, not loaded as Cached) after an
    earlier attempt had started them. The server keeps no batch identity (Prefect 3.8 leaves
    `cache_key` empty), but every attempt runs the plan's batches in order, and events lost with a
    killed process are only the last ones, so a batch is its position in its attempt's runs."""
    attempts: dict[int, list[Any]] = defaultdict(list)
    for run in sorted(runs, key=lambda run: run.expected_start_time or run.created):
        attempts[run.flow_run_run_count].append(run)
    first_attempt: dict[int, int] = {}
    run_again: set[int] = set()
    for attempt, in_order in sorted(attempts.items()):
        for position, run in enumerate(in_order):
            if run.state_name == "Pending":  # never started; Prefect 3.8 also records strays at attempt 0
                continue
            first_attempt.setdefault(position, attempt)
            if run.state_name == "Completed" and attempt > first_attempt[position]:
                run_again.add(position)
    return len(run_again)


def server_batch_figures(client: SyncPrefectClient, flow_run_id: UUID, batches: int) -> dict[str, Any]:
    """read_run's batch figures, and our own over every page. Task runs reach the server as
    events and are recorded after the run is Completed, so first wait until their number holds
    still across two reads and covers at least the last attempt's `batches`."""
    from tasks.engine.status import read_run

    seen: list[int] = []

    def settled() -> list[Any] | None:
        runs = batch_runs(client, flow_run_id)
        seen.append(len(runs))
        return runs if len(runs) >= batches and seen[-2:-1] == [len(runs)] else None

    try:
        runs, is_settled = wait_until(settled, SETTLE_TIMEOUT_S, 2.0, "batch task runs to settle"), True
    except TimeoutError:
        runs, is_settled = batch_runs(client, flow_run_id), False
    status = read_run(client, flow_run_id)
    return {
        "task_runs_rerun": status.task_runs_rerun, "task_runs_started": status.task_runs_started,
        "attempts": status.attempts, "batch_runs": len(runs), "batch_runs_settled": is_settled,
        "unfinished_batch_runs": sum(1 for run in runs if run.state_type is None
                                     or run.state_type.value != "COMPLETED"),
        "batches_run_again": batches_run_again(runs),
    }


def run_job(chaos: Chaos, args: argparse.Namespace, server: HTTPServer) -> dict[str, Any]:
    """Deploy, start the run on chunks `server` serves, kill its workers, wait for it to complete and
    measure the damage."""
    from tasks.engine.telemetry import count_batches_redone
    from tasks.storage.stores import StorageAccess
    from tests.jobs import build_job

    deploy(chaos.env, "--crash-after", "40s", "--reschedule-after", "10s",
           "--max-attempts", str(args.kills + 1 + SPARE_ATTEMPTS))
    source = make_chunks(chaos.scratch / "source", args.chunks, args.chunk_kib * 1024)
    build_job(source, chaos.scratch / "reference", job=JOB)
    say(f"deployed; {args.chunks} chunks of {args.chunk_kib} KiB written, reference built")
    files = files_under(source, "chunks")
    held = [sorted(files)[(kill + 1) * BATCHES_PER_ATTEMPT * args.batch_size] for kill in range(args.kills)]
    with gated_repository(server, files, *held) as served:
        chaos.gates = served.gates
        chaos.start_worker()
        request = {"source": [served.location("chunks")], "access": {"github_api_url": served.api_url},
                   "destination": str(chaos.scratch / "out"), "job": JOB, "batch_size": args.batch_size}
        chaos.flow_run_id = start_deployment_run(chaos.env, json.dumps({"request": request}))
        kill_repeatedly(chaos, args.kills)
        say(f"{len(chaos.killed_at)} kills done; waiting for the run to complete")
        wait_for_completion(chaos.client, chaos.flow_run_id)
    chunk_ids = {path.relative_to(source).as_posix() for path in source.rglob("*") if path.is_file()}
    return {
        "chunks": args.chunks, "kills": len(chaos.killed_at), "kills_asked": args.kills,
        **compare_job(chaos.scratch, chunk_ids, chaos.recipes_at_kills),
        **server_batch_figures(chaos.client, chaos.flow_run_id, math.ceil(args.chunks / args.batch_size)),
        "redone_batches": count_batches_redone(str(chaos.scratch / "out"), StorageAccess(), JOB),
        "recovery_s_median": round(statistics.median(chaos.recoveries_s), 1) if chaos.recoveries_s else None,
        "recovery_s": [round(seconds, 1) for seconds in chaos.recoveries_s],
        **recovery_phases(chaos.client, chaos.flow_run_id, chaos.killed_at),
        "attempts_chunk_before_heartbeat": chaos.chunk_before_heartbeat,
        "batch_size": args.batch_size, "chunk_kib": args.chunk_kib,
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """One server, one deployment, one run under repeated kills; everything stopped at the end."""
    scratch = Path(tempfile.mkdtemp(prefix="colabflow-chaos-"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake GitHub's server: no line per request
    server = HTTPServer()
    server.start()
    try:
        with prefect_server(scratch / "server") as api_url:
            env = server_environment(scratch / "client-home", api_url)
            env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
            os.environ.update(env)  # before Prefect is imported: it reads its settings then
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                chaos = Chaos(env, scratch, args.chunks, client)
                try:
                    figures = run_job(chaos, args, server)
                finally:
                    for worker in chaos.workers:
                        if worker.poll() is None:
                            kill_machine(worker)
    finally:
        server.clear()
        server.stop()
        if args.keep:
            say(f"kept {scratch} (job, reference, worker and server logs)")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return {**figures, "wall_s": round(time.monotonic() - STARTED, 1)}


def targets(figures: dict[str, Any]) -> dict[str, bool]:
    kills = figures["kills"]
    return {
        "lost == 0": figures["lost"] == 0,
        "duplicates == 0": figures["duplicates"] == 0,
        "identical": figures["identical"] is True,
        "redone_batches <= kills": figures["redone_batches"] <= kills,
        "batches_run_again <= kills": figures["batches_run_again"] <= kills,
        "changed_after_kill == 0": figures["changed_after_kill"] == 0,
    }


def print_summary(figures: dict[str, Any]) -> None:
    for name, value in figures.items():
        print(f"{name:<32}{value}", file=sys.stderr)
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
