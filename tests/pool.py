"""A deployed `colab-gpu` pool on the test server, and worker processes that can be killed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import psutil

ROOT = Path(__file__).parent.parent


def run_checked(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def deploy(env: dict[str, str], *setup_arguments: str) -> None:
    """`colabflow setup` then `prefect deploy --all`, as the docs tell a user."""
    run_checked([sys.executable, "-m", "flows.cli", "setup", *setup_arguments], env)
    run_checked([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
                 "--prefect-file", "deployments/prefect.yaml"], env)


def start_worker(env: dict[str, str], log: Path, *arguments: str) -> subprocess.Popen[bytes]:
    """`colabflow worker` in its own session, logging to `log`."""
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", "worker", *arguments], env=env, cwd=ROOT,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def kill_machine(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and every descendant at once, as when a Colab runtime vanishes."""
    victims = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    process.wait()


def start_deployment_run(env: dict[str, str], parameters: str) -> UUID:
    """`prefect deployment run` with JSON parameters; returns the flow run id."""
    output = run_checked([sys.executable, "-m", "prefect", "deployment", "run", "compress-chunks/colab-gpu",
                          "--params", parameters], env)
    for line in output.splitlines():
        if "UUID" in line:
            return UUID(line.split()[-1])
    raise AssertionError(f"no flow run id in: {output}")


def flow_run_state(flow_run_id: UUID) -> str:
    """The name of a flow run's current state."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state.name if state else "unknown"


def recipes_at(job_dir: Path) -> dict[Path, bytes]:
    """Every recipe of a job folder and its bytes: the chunks done at this moment."""
    return {path: path.read_bytes() for path in (job_dir / "chunks").glob("*.recipe.json")}


def finish_with_new_worker(env: dict[str, str], log: Path, flow_run_id: UUID) -> None:
    """Start a fresh worker, wait until the run completes, then stop that worker."""
    from tests.servers import wait_until

    worker = start_worker(env, log)
    try:
        wait_until(lambda: flow_run_state(flow_run_id) == "Completed", 300, 1.0, "the run to complete")
    finally:
        kill_machine(worker)
