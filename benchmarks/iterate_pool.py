"""The iterate benchmark's pool phase: kill -9 the worker running an iterate job, time its resume elsewhere.

It starts one real Prefect server, runs `colabflow setup` (with `--crash-after` and
`--reschedule-after`) and `prefect deploy` as the docs say, starts two `colabflow worker`s whose
allowlist holds the benchmark's program, and starts `iterate/colab-gpu` with
`prefect deployment run --params '{"request": {...}}'`: the same program and state, a checkpoint
each scaled minute, 2.5 scaled minutes of steps. Once `latest.json` names the first checkpoint,
it SIGKILLs the busy worker with every descendant, and the other worker takes the run over.

The times come from the run's state history (server clock) and the program's marker file, whose
lines each process appends when it has built the program, loaded the state and made its first
step (benchmarks/iterate_program.py): kill -> Crashed (detection), Crashed -> Scheduled
(reschedule), Scheduled -> Running (pickup: Scheduled -> Pending, the worker's poll, and Pending ->
Running, the flow-run process's start), Running -> program built (the flow's first tasks), built ->
state loaded (find, read, verify and decode the checkpoint, `load_state_dict`), loaded -> first
step. Once the run is Completed, the job must verify and every iteration's metric must be the one
an unbroken run reports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from subprocess import Popen
from typing import Any
from uuid import UUID

from benchmarks.iterate_program import DEFAULTS, expected_level
from tests.pool import (
    busy_worker,
    deploy,
    kill_machine,
    start_deployment_run,
    start_worker,
)
from tests.servers import prefect_server, server_environment, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = "benchmarks.iterate_program:StateProgram"
DEPLOYMENT = "iterate/colab-gpu"
JOB = "iterate-pool"
ALLOWED_CODE = "benchmarks.iterate_program,tasks.*.examples"
CHECKPOINT_TIMEOUT_S = 300.0
RESUME_TIMEOUT_S = 600.0
FINAL_STATES = {"Completed", "Failed", "Crashed", "Cancelled"}


def pool_environment(home: Path, api_url: str) -> dict[str, str]:
    """The client's and workers' environment: the server, 2 s worker polls, the program on the allowlist."""
    env = server_environment(home, api_url)
    env.update(PREFECT_WORKER_QUERY_SECONDS="2", COLABFLOW_ALLOWED_CODE=ALLOWED_CODE,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    return env


def iterate_request(scratch: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The job: 2.5 scaled minutes of steps, a checkpoint each scaled minute, the marker in the scratch folder."""
    steps = math.ceil(2.5 * args.scale / (args.step_ms / 1000))
    params = {"state_mib": str(args.state_mib), "step_ms": str(args.step_ms), "marker": str(scratch / "marker.jsonl")}
    return {"destination": str(scratch / "pool-out"), "job": JOB, "program": PROGRAM, "iterations": steps,
            "params": params, "checkpoint_every_minutes": args.scale / 60}


def read_markers(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def resumed_events(path: Path, first_pid: int) -> dict[str, dict[str, Any]] | None:
    """The built, loaded and first_step events of the process after `first_pid`, once all three are there."""
    events = {event["event"]: event for event in read_markers(path) if event["pid"] != first_pid}
    return events if {"built", "loaded", "first_step"} <= events.keys() else None


def final_state(client: Any, flow_run_id: UUID) -> tuple[str, str] | None:
    state = client.read_flow_run(flow_run_id).state
    name = (state.name or state.type.value) if state else "unknown"
    return (name, state.message or "") if state and name in FINAL_STATES else None


def state_times(client: Any, flow_run_id: UUID, killed_at: datetime) -> dict[str, float]:
    """Epoch seconds of the first Crashed after the kill, then of the Scheduled, Pending and Running after it,
    and the time the Scheduled state was scheduled for (`scheduled_for`)."""
    states = sorted(client.read_flow_run_states(flow_run_id), key=lambda state: state.timestamp)
    moments, since = {}, killed_at
    for state_type in ("CRASHED", "SCHEDULED", "PENDING", "RUNNING"):
        found = next((state for state in states if state.type.value == state_type and state.timestamp >= since), None)
        if found is None:
            raise RuntimeError(f"no {state_type} state after {since:%H:%M:%S} in the run's history: "
                               f"{[(state.name, f'{state.timestamp:%H:%M:%S}') for state in states]}")
        moments[state_type.lower()], since = found.timestamp.timestamp(), found.timestamp
        if state_type == "SCHEDULED":
            moments["scheduled_for"] = (found.state_details.scheduled_time or found.timestamp).timestamp()
    return moments


def check_job(job_dir: Path, iterations: int) -> None:
    """Fail unless the job verifies and each iteration's metric is the one an unbroken run reports."""
    from tasks.engine.job_folder import open_job_location
    from tasks.iterations.verify import verify_iterations

    check = verify_iterations(open_job_location(str(job_dir)))
    if check.problems:
        raise RuntimeError(f"{job_dir} does not verify: {[problem.reason for problem in check.problems]}")
    lines = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    regions = int(DEFAULTS["regions"])
    wrong = [line for line in lines if line["level"] != expected_level(line["iteration"], regions)]
    if len(lines) != iterations or wrong:
        raise RuntimeError(f"{job_dir}: {len(lines)} of {iterations} iterations, levels wrong at {wrong[:3]}")


def kill_after_first_checkpoint(job_dir: Path, marker: Path, workers: list[Popen[bytes]]) -> tuple[datetime, int, int]:
    """Wait for `latest.json`, then kill the busy worker's tree; when, the checkpoint's iteration, the killed pid."""
    wait_until(lambda: (job_dir / "latest.json").is_file(), CHECKPOINT_TIMEOUT_S, 0.02, "the first checkpoint")
    victim = wait_until(lambda: busy_worker(workers), 30, 0.02, "the worker running the job")
    killed_at = datetime.now(timezone.utc)
    kill_machine(victim)
    iteration = json.loads((job_dir / "latest.json").read_bytes())["iteration"]
    return killed_at, iteration, read_markers(marker)[0]["pid"]


def run_and_kill(env: dict[str, str], scratch: Path, args: argparse.Namespace, client: Any) -> dict[str, Any]:
    """Start the run on two workers, kill the busy one after the first checkpoint, wait for the resume and the end."""
    request = iterate_request(scratch, args)
    marker, job_dir = Path(request["params"]["marker"]), scratch / "pool-out" / JOB
    workers = [start_worker(env, scratch / f"worker-{number}.log") for number in (1, 2)]
    try:
        flow_run_id = start_deployment_run(env, json.dumps({"request": request}), DEPLOYMENT)
        killed_at, checkpoint, first_pid = kill_after_first_checkpoint(job_dir, marker, workers)
        events = wait_until(lambda: resumed_events(marker, first_pid), RESUME_TIMEOUT_S, 0.1, "the resumed first step")
        name, message = wait_until(lambda: final_state(client, flow_run_id), RESUME_TIMEOUT_S, 1.0, "the run to end")
    finally:
        for worker in workers:
            if worker.poll() is None:
                kill_machine(worker)
    if name != "Completed":
        raise RuntimeError(f"the run ended {name}, not Completed: {message}")
    check_job(job_dir, request["iterations"])
    if events["first_step"]["iteration"] != checkpoint:
        raise RuntimeError(f"the run resumed at iteration {events['first_step']['iteration']}, not at the "
                           f"checkpoint in force when it was killed ({checkpoint})")
    return {"iterations": request["iterations"], "resumed_from": checkpoint, "killed_at": killed_at,
            "flow_run_id": flow_run_id, "events": events}


def checkpoint_bytes(job_dir: Path) -> int:
    """The size of the checkpoint in force: every checkpoint of the job holds the same state."""
    pointer = json.loads((job_dir / "latest.json").read_bytes())
    return sum(path.stat().st_size for path in (job_dir / pointer["checkpoint"]).iterdir())


def phases(moments: dict[str, float], killed: float, events: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Seconds of each step from the kill to the first resumed step."""
    built, loaded, stepped = (events[name]["at"] for name in ("built", "loaded", "first_step"))
    steps = {
        "detect_s": moments["crashed"] - killed, "reschedule_s": moments["scheduled"] - moments["crashed"],
        "scheduled_ahead_s": moments["scheduled_for"] - moments["scheduled"],
        "pickup_s": moments["running"] - moments["scheduled"],
        "pickup_poll_s": moments["pending"] - moments["scheduled"],
        "pickup_start_s": moments["running"] - moments["pending"], "start_to_build_s": built - moments["running"],
        "state_load_s": loaded - built, "first_step_s": stepped - loaded, "kill_to_first_step_s": stepped - killed,
    }
    return {name: round(value, 3) for name, value in steps.items()}


def measure_pool(scratch: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One server, the pool deployed, two workers, one run killed once; the resume's phases."""
    started = time.monotonic()
    with prefect_server(scratch / "server") as api_url:
        env = pool_environment(scratch / "client-home", api_url)
        os.environ.update(env)  # before Prefect is imported: it reads its settings then
        from prefect.client.orchestration import get_client

        deploy(env, "--crash-after", args.crash_after, "--reschedule-after", args.reschedule_after)
        with get_client(sync_client=True) as client:
            run = run_and_kill(env, scratch, args, client)
            moments = state_times(client, run["flow_run_id"], run["killed_at"])
    size = checkpoint_bytes(scratch / "pool-out" / JOB)
    figures = phases(moments, run["killed_at"].timestamp(), run["events"])
    return {"crash_after": args.crash_after, "reschedule_after": args.reschedule_after, "workers": 2,
            "iterations": run["iterations"], "resumed_from": run["resumed_from"], "verified": True,
            **figures, "checkpoint_bytes": size, "state_load_mb_s": round(size / 1e6 / figures["state_load_s"], 1),
            "wall_s": round(time.monotonic() - started, 1)}
