"""A deployed `colab-gpu` pool on the test server, and worker processes that can be killed."""

from __future__ import annotations

import json
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


DEPLOYMENT = "compress-chunks/colab-gpu"


def start_deployment_run(env: dict[str, str], parameters: str, deployment: str = DEPLOYMENT) -> UUID:
    """`prefect deployment run DEPLOYMENT --params '{"request": {…}}'`; returns the flow run id."""
    output = run_checked([sys.executable, "-m", "prefect", "deployment", "run", deployment, "--params", parameters], env)
    return run_id_in(output)


def start_request_run(env: dict[str, str], request: dict[str, object]) -> UUID:
    """`prefect deployment run 'compress-chunks/colab-gpu' --param request='{…}'`, as docs/deployments.md shows."""
    output = run_checked([sys.executable, "-m", "prefect", "deployment", "run", DEPLOYMENT,
                          "--param", f"request={json.dumps(request)}"], env)
    return run_id_in(output)


def run_id_in(output: str) -> UUID:
    for line in output.splitlines():
        if "UUID" in line:
            return UUID(line.split()[-1])
    raise AssertionError(f"no flow run id in: {output}")


def busy_worker(workers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes] | None:
    """The worker that is executing a flow run: its tree holds more than the Prefect worker itself."""
    for worker in workers:
        try:
            if len(psutil.Process(worker.pid).children(recursive=True)) > 1:
                return worker
        except psutil.NoSuchProcess:
            continue
    return None


def verify_with_cli(env: dict[str, str], job_dir: Path) -> str:
    """`colabflow verify JOB_DIR`, the installed console command; returns what it printed."""
    return run_checked([str(Path(sys.executable).parent / "colabflow"), "verify", str(job_dir)], env)


def spent_task_retries(flow_run_id: UUID) -> list[str]:
    """Task runs of a flow run that used a retry: a run count above 1 or an AwaitingRetry state."""
    from prefect.client.orchestration import get_client

    from tasks.engine.status import read_task_runs

    spent: list[str] = []
    with get_client(sync_client=True) as client:
        for task_run in read_task_runs(client, flow_run_id):
            names = {state.name or "" for state in client.read_task_run_states(task_run.id)}
            if task_run.run_count > 1 or "AwaitingRetry" in names:
                spent.append(f"{task_run.name}: run count {task_run.run_count}, states {sorted(names)}")
    return spent


def state_history(flow_run_id: UUID) -> list[tuple[str, str]]:
    """A flow run's states as (type, name), oldest first."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(flow_run_id), key=lambda state: state.timestamp)
    return [(str(state.type.value), state.name or str(state.type.value)) for state in states]


def flow_run_state(flow_run_id: UUID) -> str:
    """The name of a flow run's current state."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return (state.name or str(state.type.value)) if state else "unknown"


def recipes_at(job_dir: Path) -> dict[str, bytes]:
    """Every recipe line of a job folder's journals, by chunk id: the chunks done at this moment.

    Read as plain JSON, so that importing this module does not import Prefect.
    """
    journals = sorted((job_dir / "recipes").glob("*.jsonl")) if (job_dir / "recipes").is_dir() else []
    return {json.loads(line)["chunk_id"]: line for journal in journals for line in journal.read_bytes().splitlines()}
