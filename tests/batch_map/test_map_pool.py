"""`map-items/colab-gpu` on a real pool: the code allowlist holds on the worker, and a kill -9 costs one batch."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from tasks.engine.status import job_status
from tests.pool import (
    ROOT,
    busy_worker,
    deploy,
    flow_run_state,
    kill_machine,
    start_deployment_run,
    start_worker,
    verify_with_cli,
)
from tests.servers import server_environment, wait_until

DEPLOYMENT = "map-items/colab-gpu"
ITEMS = 400
BATCH = 8
GATED_BATCH = 6  # the batch that waits for the test: five are committed before it

GATED_FUNCTION = '''
class Gated:
    """Doubles each item's number; the batch holding `hold_at` blocks until the test opens and closes the gate (a FIFO)."""

    def __init__(self, gate, hold_at):
        self.gate, self.hold_at = gate, hold_at

    def __call__(self, batch):
        if any(item["id"] == self.hold_at for item in batch):
            open(self.gate + ".reached", "w").close()
            with open(self.gate, "rb") as gate:  # returns once a writer has opened the FIFO and closed it
                gate.read()
        return [{"double": item["n"] * 2} for item in batch]
'''


def open_gate(gate: Path) -> bool:
    """Release the batch waiting on the FIFO, if one is (opening it for writing fails without a reader)."""
    try:
        os.close(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as error:
        if error.errno == errno.ENXIO:
            return False
        raise
    return True


@pytest.fixture
def map_pool(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """The pool deployed; workers may import the test's own package `labcode` and nothing else of theirs."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    deploy(env, "--crash-after", "60s", "--reschedule-after", "10s")
    package = tmp_path / "lab" / "labcode"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "gated.py").write_text(GATED_FUNCTION)
    env["PYTHONPATH"] = str(tmp_path / "lab")
    env["COLABFLOW_ALLOWED_CODE"] = "labcode"
    return env


def final_state(flow_run_id: UUID) -> tuple[str, str]:
    """The run's state name and message once it is final."""
    from prefect.client.orchestration import get_client

    wait_until(lambda: flow_run_state(flow_run_id) in {"Completed", "Failed", "Crashed"}, 180, 0.5, "the run to end")
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    assert state is not None
    return state.name or "", state.message or ""


@pytest.mark.slow
def test_the_pool_refuses_code_outside_its_allowlist_and_job_variables_cannot_widen_it(
    map_pool: dict[str, str], tmp_path: Path,
) -> None:
    """subprocess:Popen, os:system and builtins:exec are refused before import; an env job variable is refused."""
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "a", "n": 1}) + "\n")
    proof = tmp_path / "ran"
    worker = start_worker(map_pool, tmp_path / "worker.log")
    try:
        for function in ("subprocess:Popen", "os:system", "builtins:exec"):
            request = {"items": str(items), "destination": str(tmp_path / "out"), "job": "refused",
                       "function": function, "params": {"args": f"touch {proof}", "shell": "1"}}
            state, message = final_state(start_deployment_run(map_pool, json.dumps({"request": request}), DEPLOYMENT))
            assert state == "Failed", (function, message)
            assert f"function '{function}' is not allowed on this worker" in message
            assert "COLABFLOW_ALLOWED_CODE" in message and "labcode" in message
        widened = subprocess.run(
            [sys.executable, "-m", "prefect", "deployment", "run", DEPLOYMENT, "--params", json.dumps({"request": request}),
             "--job-variable", 'env={"COLABFLOW_ALLOWED_CODE": "os,subprocess,builtins"}'],
            env=map_pool, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert widened.returncode != 0
        assert "Additional properties are not allowed ('env' was unexpected)" in " ".join((widened.stdout + widened.stderr).split())
    finally:
        kill_machine(worker)
    assert not proof.exists()


@pytest.mark.slow
def test_a_map_job_killed_on_one_worker_is_finished_by_another_redoing_at_most_one_batch(
    map_pool: dict[str, str], tmp_path: Path,
) -> None:
    """kill -9 of the worker holding batch 6 (the gate holds it there); the other worker completes the job once the
    test opens the gate for it."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"item-{n:04d}", "n": n}) + "\n" for n in range(ITEMS)))
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    destination = tmp_path / "out"
    request = {"items": str(items), "destination": str(destination), "job": "killed", "function": "labcode.gated:Gated",
               "params": {"gate": str(gate), "hold_at": f"item-{GATED_BATCH * BATCH:04d}"}, "batch_size": BATCH,
               "device": "cpu", "task_runs": 10}
    workers = [start_worker(map_pool, tmp_path / f"worker-{number}.log") for number in (1, 2)]
    try:
        flow_run_id = start_deployment_run(map_pool, json.dumps({"request": request}), DEPLOYMENT)
        wait_until(lambda: Path(f"{gate}.reached").exists(), 180, 0.05, "the run to reach the gated batch")
        kill_machine(wait_until(lambda: busy_worker(workers), 30, 0.05, "the worker running the job"))
        wait_until(lambda: open_gate(gate), 300, 0.1, "the other worker to reach the gated batch again")
        wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0, "the other worker to complete the run")
    finally:
        for worker in workers:
            if worker.poll() is None:
                kill_machine(worker)
    job_dir = destination / "killed"
    assert f"verified {ITEMS} of {ITEMS} items" in verify_with_cli(map_pool, job_dir)
    manifest = [json.loads(line) for line in (job_dir / "manifest.jsonl").read_text().splitlines()]
    assert sorted(entry["item_id"] for entry in manifest) == [f"item-{n:04d}" for n in range(ITEMS)]
    results = {}
    for output in (job_dir / "outputs").glob("*.jsonl"):
        for line in output.read_text().splitlines():
            record = json.loads(line)
            results[record["id"]] = record["result"]["double"]
    assert results == {f"item-{n:04d}": n * 2 for n in range(ITEMS)}
    status = job_status(str(job_dir), None)
    assert status.attempt == 2
    assert status.batches_redone == 0  # the gated batch never finished on the killed worker
