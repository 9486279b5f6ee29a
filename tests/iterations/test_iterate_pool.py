"""An iterative job on a real pool: the worker's drain checkpoints at once, and another worker ends it exactly.

A real server, `colabflow setup`, `prefect deploy`, and `colabflow worker` processes; the run is
submitted with `prefect deployment run 'iterate/colab-gpu'`.

While the drained run waits, no worker is waiting for it, and the test makes the race that used to
get such a run called dead (docs/recovery.md): a drained run's own process reschedules it
(AwaitingRetry) and its heartbeat thread lives on until the process ends, since AwaitingRetry is
not a final state, so a heartbeat can follow the AwaitingRetry and start the no-heartbeat
countdown again. The test resends the run's last real heartbeat (its resource and related
resources, as the engine sent it) stamped just after the AwaitingRetry.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from deployments.drain_events import send_events
from tasks.engine.job_folder import open_job_folder
from tasks.iterations.checkpoints import checkpoint_name, read_checkpoint
from tasks.iterations.state_digest import state_digest
from tasks.iterations.state_format import decode_state, encode_state
from tests.iterations.conftest import CRASH_AFTER_S, EVERY, GATE, ITERATIONS
from tests.iterations.gated import write_gated_program
from tests.pool import (
    flow_run_state,
    kill_machine,
    start_deployment_run,
    start_worker,
    state_history,
)
from tests.servers import holds_for, wait_until

ROOT = Path(__file__).resolve().parents[2]


def final_digest(job_dir: Path) -> str:
    """The program state's digest in the checkpoint at ITERATIONS, as `final_state_sha256` computes it."""
    loaded = read_checkpoint(open_job_folder(str(job_dir.parent), job_dir.name), checkpoint_name(ITERATIONS))
    program = decode_state(loaded.encoded)["program"]
    assert isinstance(program, dict)
    return state_digest(encode_state(program))


def last_heartbeat(api_url: str, flow_run_id: UUID) -> dict[str, Any]:
    """The newest heartbeat event the server holds for the run."""
    query = {"filter": {"resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                        "event": {"name": ["prefect.flow-run.heartbeat"]}, "order": "DESC"}, "limit": 1}
    events = httpx.post(f"{api_url}/events/filter", json=query, timeout=30).raise_for_status().json()["events"]
    assert events, f"no heartbeat of {flow_run_id} reached the server"
    return dict(events[0])


def send_heartbeat_after(heartbeat: dict[str, Any], occurred: Any) -> None:
    """Send `heartbeat` again, as a new event that occurred at `occurred`."""
    from prefect.events import Event

    late = Event(event=heartbeat["event"], resource=heartbeat["resource"], related=heartbeat["related"],
                 occurred=occurred, id=uuid4())
    asyncio.run(send_events([late]))


@pytest.mark.slow
def test_a_drained_iterate_run_checkpoints_now_waits_unharmed_and_ends_exactly_on_another_worker(
    lab_env: dict[str, str], prefect_api: str, tmp_path: Path
) -> None:
    """The budget ends while the run is at iteration GATE: it checkpoints at GATE+1 and is rescheduled. A
    heartbeat lands after its AwaitingRetry and no worker waits: it stays AwaitingRetry for twice
    --crash-after, never Crashed. Then a second worker resumes at GATE+1 and ends with the uninterrupted
    run's state and metrics."""
    program = write_gated_program(tmp_path / "lab", "hill_climb", "HillClimb")
    request = {"destination": str(tmp_path / "out"), "job": "drained", "program": program,
               "iterations": ITERATIONS, "checkpoint_every_iterations": EVERY, "seed": 7}
    straight = subprocess.run(
        [sys.executable, "-m", "flows.cli", "iterate", str(tmp_path / "straight"), "--job", "drained", "--program",
         program, "--iterations", str(ITERATIONS), "--checkpoint-every-iterations", str(EVERY), "--seed", "7", "--json"],
        env={key: value for key, value in lab_env.items() if not key.startswith("GATE_")}, cwd=ROOT,
        capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    flow_run_id = start_deployment_run(lab_env, json.dumps({"request": request}), "iterate/colab-gpu")
    first = start_worker(lab_env, tmp_path / "worker-1.log", "--time-budget", "90s", "--drain-margin", "45s",
                         "--check-every", "0.2s")
    second = None
    try:
        wait_until(lambda: (tmp_path / "gate").exists(), 120, 0.1, f"the run to reach iteration {GATE}")
        assert first.wait(timeout=240) == 0
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            rescheduled = client.read_flow_run(flow_run_id).state
        assert rescheduled is not None and rescheduled.name == "AwaitingRetry", state_history(flow_run_id)
        send_heartbeat_after(last_heartbeat(prefect_api, flow_run_id), rescheduled.timestamp + timedelta(milliseconds=5))
        holds_for(lambda: flow_run_state(flow_run_id) == "AwaitingRetry", 2 * CRASH_AFTER_S,
                  "AwaitingRetry with no worker waiting",
                  lambda: state_history(flow_run_id))
        second = start_worker(lab_env, tmp_path / "worker-2.log")
        wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0, "the second worker to end the run")
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                kill_machine(worker)
    assert "CRASHED" not in {state_type for state_type, _ in state_history(flow_run_id)}, state_history(flow_run_id)
    assert "time budget ends soon" in (tmp_path / "worker-1.log").read_text()
    job_dir = tmp_path / "out" / "drained"
    report = (job_dir / "report.md").read_text()
    assert re.search(rf"\| resumed from \| {GATE + 1} \|", report), report
    assert (job_dir / "metrics.jsonl").read_bytes() == (tmp_path / "straight" / "drained" / "metrics.jsonl").read_bytes()
    assert final_digest(job_dir) == json.loads(straight.stdout.strip().splitlines()[-1])["final_state_sha256"]
