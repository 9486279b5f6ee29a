"""Crash recovery on a real pool: a real server, `colabflow setup`, `prefect deploy`, real workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.restore import check_job
from tests.conftest import make_chunks
from tests.jobs import build_job
from tests.pool import (
    deploy,
    finish_with_new_worker,
    flow_run_state,
    kill_machine,
    recipes_at,
    start_deployment_run,
    start_worker,
)
from tests.servers import server_environment, wait_until

CHUNKS = 400
BATCH = 5


@pytest.fixture
def pool_env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """A client environment with the pool deployed and fast-polling workers."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    deploy(env, "--crash-after", "40s", "--reschedule-after", "10s")
    return env


def test_setup_twice_changes_nothing(pool_env: dict[str, str]) -> None:
    """A second `colabflow setup` finds everything in place."""
    import sys

    from tests.pool import run_checked

    output = run_checked([sys.executable, "-m", "flows.cli", "setup", "--crash-after", "40s", "--reschedule-after", "10s"], pool_env)
    assert "nothing changed" in output


def test_a_killed_worker_costs_at_most_the_batch_in_flight(pool_env: dict[str, str], tmp_path: Path) -> None:
    """kill -9 of a worker and its runs mid-job: the run is crashed, rescheduled, finished by a new
    worker, and the output equals an undisturbed run's, with finished chunks untouched."""
    source = make_chunks(tmp_path / "source", CHUNKS, 16 * 1024)
    build_job(source, tmp_path / "reference", job="chaos")
    destination = tmp_path / "out"
    parameters = {"request": {"source": [str(source)], "destination": str(destination), "job": "chaos", "batch_size": BATCH}}
    first = start_worker(pool_env, tmp_path / "worker-1.log")
    flow_run_id = start_deployment_run(pool_env, json.dumps(parameters))
    checkpoints = destination / "chaos" / ".checkpoints"
    wait_until(lambda: checkpoints.is_dir() and len(list(checkpoints.iterdir())) >= 2, 180, 0.02, "two batches done")
    kill_machine(first)
    done_at_kill = recipes_at(destination / "chaos")
    assert BATCH * 2 <= len(done_at_kill) < CHUNKS

    finish_with_new_worker(pool_env, tmp_path / "worker-2.log", flow_run_id)

    assert check_job(destination / "chaos").problems == []
    manifest = (destination / "chaos" / "manifest.jsonl").read_bytes().splitlines()
    assert len(manifest) == len(set(manifest)) == CHUNKS
    for member in (tmp_path / "reference" / "chaos" / "chunks").glob("*.gz"):
        assert (destination / "chaos" / "chunks" / member.name).read_bytes() == member.read_bytes()
    assert all(path.read_bytes() == content for path, content in done_at_kill.items())
    from prefect.client.orchestration import get_client

    from tasks.status import read_run

    with get_client(sync_client=True) as client:
        status = read_run(client, flow_run_id)
    assert status.attempts == 2
    assert status.batches_redone <= 1


def test_an_idle_worker_releases_its_host_exactly_once(prefect_api: str, tmp_path: Path) -> None:
    """With nothing to run, the worker calls the host's release once and exits 0."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    marker = tmp_path / "released"
    env["COLABFLOW_RELEASE_COMMAND"] = f"sh -c 'echo released >> {marker}'"
    worker = start_worker(env, tmp_path / "idle.log", "--pool", "idle-pool", "--idle-release", "0.05", "--check-every", "0.5s")
    assert worker.wait(timeout=120) == 0
    assert marker.read_text() == "released\n"
    assert "releasing the host" in (tmp_path / "idle.log").read_text()


def test_a_worker_at_the_end_of_its_budget_drains_and_the_run_moves_on(pool_env: dict[str, str], tmp_path: Path) -> None:
    """Budget ends mid-job: the run is rescheduled (not failed), a second worker finishes it,
    and the chunks finished before the drain are not redone."""
    source = make_chunks(tmp_path / "source", 4000, 4 * 1024)
    destination = tmp_path / "out"
    parameters = {"request": {"source": [str(source)], "destination": str(destination), "job": "drain", "batch_size": 2}}
    flow_run_id = start_deployment_run(pool_env, json.dumps(parameters))
    first = start_worker(pool_env, tmp_path / "worker-1.log", "--time-budget", "30s", "--drain-margin", "5s",
                         "--check-every", "0.2s")
    assert first.wait(timeout=180) == 0
    assert "time budget ends soon" in (tmp_path / "worker-1.log").read_text()
    done_at_drain = recipes_at(destination / "drain")
    assert 0 < len(done_at_drain) < 4000
    assert flow_run_state(flow_run_id) in ("Scheduled", "Late")
    finish_with_new_worker(pool_env, tmp_path / "worker-2.log", flow_run_id)
    assert check_job(destination / "drain").problems == []
    assert all(path.read_bytes() == content for path, content in done_at_drain.items())
