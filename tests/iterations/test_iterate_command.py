"""`colabflow iterate` from the command line: bad inputs refused with their message, a failing step loses no
checkpoint, status and verify of a job folder, and a secret that reaches no job file and no log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tasks.iterations.parameters import IterateJob
from tasks.iterations.stages import prepare_iterate
from tests.engine.test_job_folder import run_as_nobody
from tests.secret_checks import assert_secret_nowhere
from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[2]
HILL_CLIMB = "tasks.iterations.examples.hill_climb:HillClimb"
OFFLINE = {"PATH": "", "PREFECT_API_URL": "http://127.0.0.1:9/api"}


def colabflow(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *arguments], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(("extra", "message"), [
    (["--iterations", "0"], "iterations: Input should be greater than 0 (got 0)"),
    (["--checkpoint-every-minutes", "0"], "give checkpoint_every_iterations or checkpoint_every_minutes"),
    (["--checkpoint-every-iterations", "-5"], "checkpoint_every_iterations: Input should be greater than 0"),
    (["--program", "missing_lab.module:Prog"], "module 'missing_lab.module' does not import (ModuleNotFoundError"),
    (["--program", "collections:OrderedDict"], "has no step, state_dict, load_state_dict method"),
    (["--program", "tasks.iterations.examples.params:read_int"], "is a function, not a class"),
    (["--early-stop", "loss:soon:min"], "is not METRIC:PATIENCE:min|max"),
    (["--param", "size"], "--param 'size' is not KEY=VALUE"),
])
def test_parameters_that_cannot_work_are_refused_before_a_flow_run(extra: list[str], message: str) -> None:
    """Each exits 2 with its message, with no server to reach: nothing was started."""
    arguments = ["iterate", "out", "--job", "j", "--program", HILL_CLIMB, "--iterations", "10", *extra]
    result = colabflow(arguments, OFFLINE)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]


def test_a_destination_without_write_permission_is_refused_before_any_step(tmp_path: Path) -> None:
    """The job folder is proven writable before the program is built."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    request = IterateJob(destination=str(locked), job="j", program=HILL_CLIMB, iterations=10)
    message = run_as_nobody(lambda: prepare_iterate(request))
    assert message.startswith("DestinationError: cannot write") and "no permission to write there" in message


BREAKS_AT_12 = '''
from tasks.iterations.examples.hill_climb import HillClimb


class BreaksAt12(HillClimb):
    def step(self, iteration):
        metrics = super().step(iteration)
        return list(metrics.values()) if iteration == 12 else metrics
'''


def test_a_step_that_breaks_the_contract_stops_the_run_naming_it_and_keeps_its_checkpoints(
    prefect_api: str, tmp_path: Path
) -> None:
    """step(12) returns a list: exit 2 with the message; the checkpoint at 10 stays in force."""
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "breaking.py").write_text(BREAKS_AT_12)
    env = {**server_environment(tmp_path / "home", prefect_api), "PYTHONPATH": str(tmp_path / "lab")}
    result = colabflow(["iterate", str(tmp_path / "out"), "--job", "b", "--program", "breaking:BreaksAt12",
                        "--iterations", "30", "--checkpoint-every-iterations", "5"], env)
    assert result.returncode == 2
    assert "program 'breaking:BreaksAt12': step(12) returned a list; it must return a dict" in result.stderr
    assert json.loads((tmp_path / "out" / "b" / "latest.json").read_text())["iteration"] == 10


def test_status_and_verify_of_a_finished_job_and_a_rerun_that_does_nothing(prefect_api: str, tmp_path: Path) -> None:
    """Status names the iteration and the last checkpoint; verify passes; the same command again resumes at
    the end, steps nothing and reports the same final state."""
    env = server_environment(tmp_path / "home", prefect_api)
    command = ["iterate", str(tmp_path / "out"), "--job", "s", "--program", HILL_CLIMB, "--iterations", "300",
               "--checkpoint-every-iterations", "100", "--json"]
    first = report_of(colabflow(command, env))
    again = report_of(colabflow(command, env))
    assert (again["resumed_from"], again["checkpoints_written"], again["stopped_reason"]) == (300, 0, "completed")
    assert again["final_state_sha256"] == first["final_state_sha256"]
    status = json.loads(colabflow(["status", str(tmp_path / "out" / "s"), "--offline"], env).stdout)
    assert status["kind"] == "iterations" and status["items_done"] is None
    assert status["progress"]["iteration"] == 300 and status["progress"]["last_checkpoint"] == "checkpoints/0000000300"
    assert 0 <= status["progress"]["last_checkpoint_age_s"] < 600
    verified = colabflow(["verify", str(tmp_path / "out" / "s")], env)
    assert verified.returncode == 0 and verified.stdout.strip().endswith(", 0 problems")


def test_a_secret_in_a_block_reaches_neither_the_job_folder_nor_the_logs(
    prefect_api: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    """A webhook key in a Secret block signs the callback once, and appears in no job file and no log line."""
    from prefect.blocks.system import Secret

    canary = "iterate-canary-3d9e0a71c4"
    Secret(value=canary).save("iterate-webhook-key", overwrite=True)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    env = {**server_environment(tmp_path / "home", prefect_api), "PREFECT_LOGGING_LEVEL": "DEBUG"}
    result = colabflow(["iterate", str(tmp_path / "out"), "--job", "secret", "--program", HILL_CLIMB,
                        "--iterations", "50", "--checkpoint-every-iterations", "25", "--webhook",
                        httpserver.url_for("/hook"), "--webhook-secret-block", "iterate-webhook-key", "--json"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(httpserver.log) == 1 and json.loads(httpserver.log[0][0].data)["iterations_done"] == 50
    assert_secret_nowhere(canary, tmp_path / "out" / "secret", result.stdout + result.stderr)
