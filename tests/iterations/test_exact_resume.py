"""Exact resume, proven: a run killed with kill -9 at three random iterations and resumed each time ends
with the same final state and the same metrics.jsonl as a run that was never interrupted.

Both examples run through the real `colabflow iterate` command against the session's Prefect
server, as a program written outside the repository (tests/iterations/gated.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.iterations.gated import write_gated_program
from tests.servers import server_environment, wait_until

ROOT = Path(__file__).resolve().parents[2]
# The training runs on the CPU on any host: on CUDA an exact resume also needs deterministic kernels,
# which test_examples.py's gpu test turns on.
EXAMPLES = {
    "hill_climb": ("HillClimb", 3000, 200, []),
    "train": ("Trainer", 120, 15, ["--param", "device=cpu", "--param", "precision=bf16", "--param", "accumulate_steps=2",
                                   "--early-stop", "val_loss:50:min"]),
}


def iterate_command(program: str, destination: Path, iterations: int, every: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "iterate", str(destination), "--job", "exact", "--program", program,
            "--iterations", str(iterations), "--checkpoint-every-iterations", str(every), "--seed", "7", *extra,
            "--json"]


def report_of(output: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return report


def kill_at(command: list[str], env: dict[str, str], iteration: int, gate: Path) -> None:
    """Run until the program reaches `iteration`, then kill -9 the command's whole process group."""
    gate.unlink(missing_ok=True)
    process = subprocess.Popen(command, env={**env, "GATE_ITERATION": str(iteration), "GATE_FILE": str(gate)},
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: gate.exists() or process.poll() is not None, 300, 0.02, f"iteration {iteration}")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL and gate.read_text() == str(iteration)


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_a_run_killed_three_times_ends_exactly_as_an_uninterrupted_one(
    example: str, prefect_api: str, tmp_path: Path
) -> None:
    """Three kill -9s at random iterations (the seed is printed), each resumed: same final_state_sha256, same
    metrics.jsonl (one line per iteration, none twice), and the resumed runs say where they resumed."""
    name, iterations, every, extra = EXAMPLES[example]
    program = write_gated_program(tmp_path / "lab", example, name)
    env = {**server_environment(tmp_path / "home", prefect_api), "PYTHONPATH": str(tmp_path / "lab")}
    straight = subprocess.run(iterate_command(program, tmp_path / "straight", iterations, every, extra), env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    seed = random.randrange(10**6)
    print(f"kill iterations drawn with seed {seed}")
    kills = sorted(random.Random(seed).sample(range(1, iterations - 1), 3))
    command = iterate_command(program, tmp_path / "killed", iterations, every, extra)
    for iteration in kills:
        kill_at(command, env, iteration, tmp_path / "gate")
    resumed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, report = report_of(straight.stdout), report_of(resumed.stdout)
    assert report["final_state_sha256"] == expected["final_state_sha256"], kills
    assert report["iterations_done"] == expected["iterations_done"]
    assert report["resumed_from"] == kills[-1] // every * every, kills
    metrics = (tmp_path / "killed" / "exact" / "metrics.jsonl").read_bytes()
    assert metrics == (tmp_path / "straight" / "exact" / "metrics.jsonl").read_bytes()
    numbers = [json.loads(line)["iteration"] for line in metrics.splitlines()]
    assert numbers == list(range(expected["iterations_done"]))
