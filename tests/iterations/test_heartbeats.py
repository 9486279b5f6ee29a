"""Heartbeats keep a healthy long run alive: an iterate run held on a real pool for more than three times
--crash-after is never marked Crashed. Apart from the drain test so the two run in parallel processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_heartbeats_keep_a_healthy_run_alive_for_more_than_three_times_crash_after(
    lab_env: dict[str, str], tmp_path: Path
) -> None:
    """A run held at iteration GATE for 3.1 x --crash-after on a healthy worker is never marked Crashed, and
    then ends as the uninterrupted run does (its attempt count stays 1)."""
    program = write_gated_program(tmp_path / "lab", "hill_climb", "HillClimb")
    request = {"destination": str(tmp_path / "out"), "job": "held", "program": program,
               "iterations": ITERATIONS, "checkpoint_every_iterations": EVERY, "seed": 7}
    env = {**lab_env, "GATE_UNTIL": "release"}
    flow_run_id = start_deployment_run(env, json.dumps({"request": request}), "iterate/colab-gpu")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: (tmp_path / "gate").exists(), 120, 0.1, f"the run to reach iteration {GATE}")
        holds_for(lambda: flow_run_state(flow_run_id) == "Running", 3.1 * CRASH_AFTER_S,
                  f"Running, held at iteration {GATE}",
                  lambda: state_history(flow_run_id))
        (tmp_path / "gate.release").touch()
        wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0, "the held run to complete")
    finally:
        kill_machine(worker)
    history = [name for _, name in state_history(flow_run_id)]
    assert "Crashed" not in history and history.count("Running") == 1, history

