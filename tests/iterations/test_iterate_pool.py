"""An iterative job on a real pool: the worker's drain checkpoints at once, and another worker ends it exactly.

A real server, `colabflow setup`, `prefect deploy`, and `colabflow worker` processes; the run is
submitted with `prefect deployment run 'iterate/colab-gpu'`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tasks.engine.job_folder import open_job_folder
from tasks.iterations.checkpoints import checkpoint_name, read_checkpoint
from tasks.iterations.state_digest import state_digest
from tasks.iterations.state_format import decode_state, encode_state
from tests.iterations.conftest import EVERY, GATE, ITERATIONS
from tests.iterations.gated import write_gated_program
from tests.pool import (
    flow_run_state,
    kill_machine,
    start_deployment_run,
    start_worker,
    state_history,
)
from tests.servers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def final_digest(job_dir: Path) -> str:
    """The program state's digest in the checkpoint at ITERATIONS, as `final_state_sha256` computes it."""
    loaded = read_checkpoint(open_job_folder(str(job_dir.parent), job_dir.name), checkpoint_name(ITERATIONS))
    program = decode_state(loaded.encoded)["program"]
    assert isinstance(program, dict)
    return state_digest(encode_state(program))


def test_a_drained_iterate_run_checkpoints_now_and_ends_exactly_on_another_worker(
    lab_env: dict[str, str], tmp_path: Path
) -> None:
    """The budget ends while the run is at iteration GATE: it checkpoints at GATE+1, is rescheduled, and the
    second worker resumes there and ends with the uninterrupted run's state and metrics."""
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
        second = start_worker(lab_env, tmp_path / "worker-2.log")
        wait_until(lambda: ("SCHEDULED", "AwaitingRetry") in state_history(flow_run_id), 240, 0.5,
                   "the drain to reschedule the run")
        wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0, "the second worker to end the run")
        assert first.wait(timeout=240) == 0
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                kill_machine(worker)
    assert "time budget ends soon" in (tmp_path / "worker-1.log").read_text()
    job_dir = tmp_path / "out" / "drained"
    report = (job_dir / "report.md").read_text()
    assert re.search(rf"\| resumed from \| {GATE + 1} \|", report), report
    assert (job_dir / "metrics.jsonl").read_bytes() == (tmp_path / "straight" / "drained" / "metrics.jsonl").read_bytes()
    assert final_digest(job_dir) == json.loads(straight.stdout.strip().splitlines()[-1])["final_state_sha256"]
