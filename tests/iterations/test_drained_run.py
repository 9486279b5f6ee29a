"""A drained run waiting in the queue with no worker to take it is not called dead (docs/recovery.md).

The race: a drained run's own process reschedules it (AwaitingRetry) and its heartbeat thread
lives on until the process ends, since AwaitingRetry is not a final state. A heartbeat sent in that
moment starts the no-heartbeat countdown again, and nothing of the run's answers it while the run
waits. The test makes that heartbeat happen: it resends the run's last real heartbeat (its
resource and related resources, as the engine sent it) stamped just after the AwaitingRetry.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx

from tests.iterations.conftest import CRASH_AFTER_S, EVERY, ITERATIONS
from tests.iterations.gated import write_gated_program
from tests.pool import flow_run_state, kill_machine, start_deployment_run, start_worker, state_history
from tests.servers import wait_until


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
    from prefect.events.clients import get_events_client

    late = Event(event=heartbeat["event"], resource=heartbeat["resource"], related=heartbeat["related"],
                 occurred=occurred, id=uuid4())

    async def send() -> None:
        async with get_events_client() as events:
            await events.emit(late)

    asyncio.run(send())


def test_a_drained_run_with_no_worker_waiting_is_never_called_dead(
    lab_env: dict[str, str], prefect_api: str, tmp_path: Path
) -> None:
    """A stopped worker drains the run at iteration GATE; a heartbeat lands after its AwaitingRetry; with no
    worker waiting, the run stays AwaitingRetry for twice --crash-after, then a new worker ends it, never Crashed."""
    program = write_gated_program(tmp_path / "lab", "hill_climb", "HillClimb")
    request = {"destination": str(tmp_path / "out"), "job": "waiting", "program": program,
               "iterations": ITERATIONS, "checkpoint_every_iterations": EVERY, "seed": 7}
    flow_run_id = start_deployment_run(lab_env, json.dumps({"request": request}), "iterate/colab-gpu")
    first = start_worker(lab_env, tmp_path / "worker-1.log")
    second = None
    try:
        wait_until(lambda: (tmp_path / "gate").exists(), 120, 0.1, "the run to reach the gate")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=240) == 0
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            rescheduled = client.read_flow_run(flow_run_id).state
        assert rescheduled is not None and rescheduled.name == "AwaitingRetry", state_history(flow_run_id)
        send_heartbeat_after(last_heartbeat(prefect_api, flow_run_id), rescheduled.timestamp + timedelta(milliseconds=5))
        watch_until = time.monotonic() + 2 * CRASH_AFTER_S
        while time.monotonic() < watch_until:
            assert flow_run_state(flow_run_id) == "AwaitingRetry", state_history(flow_run_id)
            time.sleep(1.0)
        second = start_worker(lab_env, tmp_path / "worker-2.log")
        wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0, "the second worker to end the run")
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                kill_machine(worker)
    assert "CRASHED" not in {state_type for state_type, _ in state_history(flow_run_id)}, state_history(flow_run_id)
    assert "received SIGTERM" in (tmp_path / "worker-1.log").read_text()
