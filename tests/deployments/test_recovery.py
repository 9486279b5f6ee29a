"""Crash recovery on a real pool: a real server, `colabflow setup`, `prefect deploy`, real workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from uuid import UUID

import pytest
from pytest_httpserver import HTTPServer

from tasks.compression.restore import check_job
from tasks.engine.status import RunStatus, job_status, read_run
from tests.conftest import make_chunks
from tests.github_fake import files_under, gated_repository
from tests.jobs import build_job
from tests.pool import (
    busy_worker,
    deploy,
    flow_run_state,
    kill_machine,
    recipes_at,
    run_checked,
    spent_task_retries,
    start_deployment_run,
    start_request_run,
    start_worker,
    state_history,
    verify_with_cli,
)
from tests.servers import server_environment, wait_until

CHUNKS = 100
BATCH = 5
# The batch in flight when a worker is killed or drained: its first chunk's read is held by the
# fake GitHub's proxy until the test releases it (tests/github_fake.py), so three batches are done.
GATED_BATCH = 3


@pytest.fixture
def pool_env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """A client environment with the pool deployed and fast-polling workers."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    deploy(env, "--crash-after", "60s", "--reschedule-after", "10s")
    return env


def test_setup_twice_changes_nothing(pool_env: dict[str, str]) -> None:
    """A second `colabflow setup` finds everything in place."""
    output = run_checked([sys.executable, "-m", "flows.cli", "setup", "--crash-after", "60s", "--reschedule-after", "10s"], pool_env)
    assert "nothing changed" in output


@pytest.mark.slow
def test_a_killed_worker_costs_at_most_the_batch_in_flight(pool_env: dict[str, str], tmp_path: Path,
                                                           httpserver: HTTPServer) -> None:
    """kill -9 of the busy one of two workers while batch GATED_BATCH waits at its gate: the other finishes the job,
    it verifies, no batch is computed twice and no task retry is spent."""
    source = make_chunks(tmp_path / "source", CHUNKS, 16 * 1024)
    build_job(source, tmp_path / "reference", job="chaos")
    destination = tmp_path / "out"
    files = files_under(source, "chunks")
    workers = [start_worker(pool_env, tmp_path / f"worker-{number}.log") for number in (1, 2)]
    try:
        with gated_repository(httpserver, files, sorted(files)[GATED_BATCH * BATCH]) as served:
            request = {"source": [served.location("chunks")], "access": {"github_api_url": served.api_url},
                       "destination": str(destination), "job": "chaos", "batch_size": BATCH}
            flow_run_id = start_request_run(pool_env, request)
            wait_until(served.gate.reached.is_set, 180, 0.05, f"the run to reach batch {GATED_BATCH}'s gate")
            kill_machine(wait_until(lambda: busy_worker(workers), 30, 0.05, "the worker running the job"))
            done_at_kill = recipes_at(destination / "chaos")
            served.gate.release()
            wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0,
                       "the other worker to complete the run")
    finally:
        for worker in workers:
            if worker.poll() is None:
                kill_machine(worker)

    assert len(done_at_kill) == GATED_BATCH * BATCH
    assert f"verified {CHUNKS} of {CHUNKS} items" in verify_with_cli(pool_env, destination / "chaos")
    manifest = (destination / "chaos" / "manifest.jsonl").read_bytes().splitlines()
    assert len(manifest) == len(set(manifest)) == CHUNKS
    for member in (tmp_path / "reference" / "chaos" / "chunks").glob("*.gz"):
        assert (destination / "chaos" / "chunks" / member.name).read_bytes() == member.read_bytes()
    final = recipes_at(destination / "chaos")
    assert all(final.get(chunk_id) == line for chunk_id, line in done_at_kill.items())
    assert run_status(flow_run_id).attempts == 2
    assert batches_redone(destination / "chaos") == 0  # the gated batch never finished on the killed worker
    assert spent_task_retries(flow_run_id) == []


def batches_redone(job_dir: Path) -> int | None:
    """Batches computed by more than one attempt, as `colabflow status --offline` reads them from the job folder."""
    return job_status(str(job_dir), None).batches_redone


def run_status(flow_run_id: UUID) -> RunStatus:
    """Attempts and task units run again, as `colabflow status` reads them from the API."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return read_run(client, flow_run_id)


def test_an_idle_worker_releases_its_host_exactly_once(prefect_api: str, tmp_path: Path) -> None:
    """With nothing to run, the worker calls the host's release once and exits 0."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    marker = tmp_path / "released"
    env["COLABFLOW_RELEASE_COMMAND"] = f"sh -c 'echo released >> {marker}'"
    worker = start_worker(env, tmp_path / "idle.log", "--pool", "idle-pool", "--idle-release", "0.05", "--check-every", "0.5s")
    assert worker.wait(timeout=120) == 0
    assert marker.read_text() == "released\n"
    assert "releasing the host" in (tmp_path / "idle.log").read_text()


@pytest.mark.slow
def test_a_worker_at_the_end_of_its_budget_drains_and_the_run_moves_on(pool_env: dict[str, str], tmp_path: Path,
                                                                      httpserver: HTTPServer) -> None:
    """The budget ends while batch GATED_BATCH waits at its gate: the run is rescheduled (AwaitingRetry), and a
    waiting worker finishes it, computing no batch again."""
    files = files_under(make_chunks(tmp_path / "source", 40, 1024), "chunks")
    destination = tmp_path / "out"
    first = second = None
    try:
        with gated_repository(httpserver, files, sorted(files)[GATED_BATCH * 2]) as served:
            request = {"source": [served.location("chunks")], "access": {"github_api_url": served.api_url},
                       "destination": str(destination), "job": "drain", "batch_size": 2}
            flow_run_id = start_deployment_run(pool_env, json.dumps({"request": request}))
            # The drain comes 45 s after the worker starts: the run waits at the gate from when it gets there.
            first = start_worker(pool_env, tmp_path / "worker-1.log", "--time-budget", "90s", "--drain-margin", "45s",
                                 "--check-every", "0.2s")
            wait_until(served.gate.reached.is_set, 120, 0.2, f"the run to reach batch {GATED_BATCH}'s gate")
            # A second worker waits for the drained run, as on a pool with a spare runtime. (A drained run left
            # waiting with no worker is not called dead: tests/iterations/test_iterate_pool.py.)
            second = start_worker(pool_env, tmp_path / "worker-2.log")
            wait_until(lambda: ("SCHEDULED", "AwaitingRetry") in state_history(flow_run_id), 240, 0.5,
                       "the drain to reschedule the run")
            assert first.wait(timeout=240) == 0
            done_at_drain = recipes_at(destination / "drain")
            served.gate.release()
            wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0,
                       "the second worker to complete the run")
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                kill_machine(worker)
    assert "time budget ends soon" in (tmp_path / "worker-1.log").read_text()
    assert len(done_at_drain) == GATED_BATCH * 2
    assert check_job(destination / "drain").problems == []
    drained = recipes_at(destination / "drain")
    assert len(drained) == len(files) and all(drained.get(chunk_id) == line for chunk_id, line in done_at_drain.items())
    assert batches_redone(destination / "drain") == 0, run_status(flow_run_id)


@pytest.mark.slow
def test_a_run_that_crashes_before_running_is_abandoned_at_its_last_attempt(prefect_api: str, tmp_path: Path) -> None:
    """--max-attempts 1, an entrypoint that cannot import: one crash before Running, then Abandoned for good."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    run_checked([sys.executable, "-m", "flows.cli", "setup", "--pool", "broken-pool", "--max-attempts", "1",
                 "--crash-after", "40s", "--reschedule-after", "10s"], env)
    deployment_id = create_deployment_that_cannot_import("broken-pool")
    worker = start_worker(env, tmp_path / "worker.log", "--pool", "broken-pool", "--queue", "any")
    try:
        flow_run_id = start_deployment_run(env, "{}", "compress-chunks/cannot-import")
        wait_until(lambda: flow_run_state(flow_run_id) == "Abandoned", 240, 1.0, "the run to be abandoned")
        reschedule_a_crashed_run(deployment_id)
    finally:
        kill_machine(worker)
    history = [name for _, name in state_history(flow_run_id)]
    assert history[-1] == "Abandoned" and history.count("Crashed") == 1 and history.count("Scheduled") == 2, history
    assert "Running" not in history
    assert "gave up after 1 attempt:" in (tmp_path / "worker.log").read_text()


def create_deployment_that_cannot_import(pool: str) -> UUID:
    """A deployment of compress-chunks on `pool` whose entrypoint names a file that does not exist."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.create_deployment(
            flow_id=client.create_flow_from_name("compress-chunks"), name="cannot-import",
            entrypoint="flows/missing_flow.py:compress_chunks", work_pool_name=pool, work_queue_name="any",
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $COLABFLOW_ROOT }}"}}],
        )


def reschedule_a_crashed_run(deployment_id: UUID) -> None:
    """Crash a second run by hand and wait until the reschedule automation moves it on: by then it
    has seen every event of the pool's runs before it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        sentinel = client.create_flow_run_from_deployment(deployment_id)
        client.set_flow_run_state(sentinel.id, Crashed(), force=True)
        wait_until(lambda: client.read_flow_run(sentinel.id).state_type != StateType.CRASHED, 120, 1.0,
                   "the reschedule automation to move the hand-crashed run")
