"""`colabflow worker`: its plan and command, and real workers on the session's Prefect server
stopped by signals or released on a stand-in Colab."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deployments.bootstrap import (
    WorkerPlan,
    code_root,
    queues_for,
    worker_command,
    worker_environment,
)
from deployments.durations import parse_duration
from tasks.gpu.devices import gpu_class_of
from tasks.hosts import LocalHost
from tests.machines import gpu_hidden, without_gpu
from tests.pool import start_worker
from tests.servers import server_environment, wait_until

FAKE_COLAB = Path(__file__).parents[1] / "fake_colab"


@pytest.mark.parametrize(
    ("name", "gpu_class"),
    [("Tesla T4", "t4"), ("NVIDIA L4", "l4"), ("NVIDIA A100-SXM4-40GB", "a100"), ("NVIDIA H100 80GB HBM3", "any")],
)
def test_gpu_names_map_to_queues(name: str, gpu_class: str) -> None:
    """Colab's GPU names map to their queue; an unknown GPU serves `any`."""
    assert gpu_class_of(name) == gpu_class


def test_a_machine_without_a_gpu_is_cpu(tmp_path: Path) -> None:
    """torch sees no CUDA and nvidia-smi finds no driver (hidden on a GPU host): the host's class is cpu."""
    with gpu_hidden(tmp_path):
        assert LocalHost().gpu_class() == "cpu"


@pytest.mark.parametrize(
    ("gpu_class", "override", "queues"),
    [("t4", None, ("t4", "any")), ("cpu", None, ("cpu", "any")), ("any", None, ("any",)),
     ("t4", ["l4", "l4", "cpu"], ("l4", "cpu"))],
)
def test_queues_are_the_class_plus_any_unless_overridden(gpu_class: str, override: list[str] | None, queues: tuple[str, ...]) -> None:
    """A worker serves its class and `any`; --queue replaces that, without duplicates."""
    assert queues_for(gpu_class, override) == queues


def test_the_worker_command_names_pool_queues_and_limit() -> None:
    """The command is `prefect worker start` for a process pool with every queue."""
    plan = WorkerPlan(pool="colab-gpu", queues=("t4", "any"), name="w", limit=1, time_budget_seconds=None,
                      drain_margin_seconds=0, idle_release_seconds=None)
    command = worker_command(plan)
    assert command[:5] == [sys.executable, "-m", "prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == "colab-gpu"
    assert [command[i + 1] for i, part in enumerate(command) if part == "--work-queue"] == ["t4", "any"]


def test_the_worker_environment_points_at_this_code_and_python() -> None:
    """Flow runs find flows/ under COLABFLOW_ROOT and run this Python's `prefect`."""
    environment = worker_environment()
    assert (code_root() / "flows" / "compress_chunks.py").is_file()
    assert environment["COLABFLOW_ROOT"] == str(code_root())
    assert environment["PATH"].split(":")[0] == str(Path(sys.executable).parent)


@pytest.mark.parametrize(("text", "unit", "seconds"), [("90s", "s", 90), ("15m", "s", 900), ("24h", "s", 86400),
                                                        ("30", "m", 1800), ("2.5", "s", 2.5)])
def test_durations_take_units_or_a_default(text: str, unit: str, seconds: float) -> None:
    """Durations accept s, m, h, or a bare number in the option's unit."""
    assert parse_duration(text, unit) == seconds


def test_a_bad_duration_says_what_is_expected() -> None:
    """A duration that is not a number with a unit is refused with examples."""
    with pytest.raises(ValueError, match="e.g. 90s, 15m, 24h"):
        parse_duration("a day")


def group_gone(pgid: int) -> bool:
    """True once no process is left in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Process groups a test started; whatever is still alive in them is killed after the test."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        if not group_gone(pgid):
            os.killpg(pgid, signal.SIGKILL)


def registered_worker(env: dict[str, str], log: Path, pool: str, leftovers: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    """Start `colabflow worker` in its own session and wait until its Prefect worker has registered
    with the server (so the signal handlers are in place); return it and the Prefect worker's pid."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    worker = start_worker(env, log, "--pool", pool, "--name", pool, "--check-every", "0.2s")
    leftovers.append(worker.pid)

    def prefect_worker_pid() -> int | None:
        assert worker.poll() is None, log.read_text()
        children = psutil.Process(worker.pid).children()
        if children and children[0].pid not in leftovers:
            leftovers.append(children[0].pid)
        with get_client(sync_client=True) as client:
            try:
                names = [found.name for found in client.read_workers_for_work_pool(pool)]
            except PrefectHTTPStatusError as error:  # a 404 until the worker has created its pool
                if error.response.status_code != 404:
                    raise
                return None
        return children[0].pid if children and pool in names else None

    pid: int = wait_until(prefect_worker_pid, 180, 0.5, "the Prefect worker registered")
    return worker, pid


@pytest.mark.parametrize(("signum", "whole_group"), [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGTERM-to-the-process", "SIGINT-to-its-group"])
def test_a_signal_stops_the_worker_and_its_process_group(
    prefect_api: str, tmp_path: Path, leftovers: list[int], signum: signal.Signals, whole_group: bool
) -> None:
    """SIGTERM (`kill PID`) or SIGINT to the terminal's group (Ctrl-C) stops the Prefect worker's whole group, and colabflow exits 0."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    log = tmp_path / "worker.log"
    worker, prefect_pid = registered_worker(env, log, f"signal-{signum.name.lower()}", leftovers)
    assert os.getpgid(prefect_pid) == prefect_pid != os.getpgid(worker.pid)
    if whole_group:
        os.killpg(worker.pid, signum)
    else:
        worker.send_signal(signum)
    assert worker.wait(timeout=180) == 0, log.read_text()
    wait_until(lambda: group_gone(prefect_pid), 60, 0.1, "the Prefect worker's process group gone")
    assert group_gone(worker.pid)
    assert f"received {signum.name}; stopping the worker" in log.read_text()


def test_a_worker_on_colab_unassigns_the_idle_runtime_once(prefect_api: str, tmp_path: Path, leftovers: list[int]) -> None:
    """On a (stand-in) Colab runtime without a GPU (hidden on a GPU host) an idle worker serves cpu, calls
    google.colab.runtime.unassign() once and exits 0."""
    state = tmp_path / "colab-state"
    state.mkdir()
    (state / "unassign.mode").write_text("no-kernel")
    env = without_gpu(server_environment(tmp_path / "client-home", prefect_api), tmp_path / "bin")
    env.update({"FAKE_COLAB_STATE": str(state), "PYTHONPATH": str(FAKE_COLAB)})
    log = tmp_path / "colab.log"
    worker = start_worker(env, log, "--pool", "colab-idle", "--idle-release", "0.05", "--check-every", "0.5s")
    leftovers.append(worker.pid)
    assert worker.wait(timeout=180) == 0, log.read_text()
    assert (state / "calls.log").read_text() == "unassign\n"
    output = log.read_text()
    assert "GPU class cpu; serving cpu, any of pool colab-idle" in output
    assert "releasing the host" in output and "runtime released" in output


def test_the_drain_signal_goes_only_to_processes_that_catch_it() -> None:
    """A process with a SIGUSR1 handler (an iterative job's loop) is seen to catch it; a plain Python one is not.
    Both sides name the same signal."""
    from deployments.bootstrap import DRAIN_SIGNAL, catches_signal
    from tasks.iterations.drain import DRAIN_SIGNAL as LOOP_DRAIN_SIGNAL

    assert DRAIN_SIGNAL == LOOP_DRAIN_SIGNAL
    script = ("import signal, sys\nif sys.argv[1] == 'catch':\n    signal.signal(signal.SIGUSR1, lambda *_: None)\n"
              "print('ready', flush=True)\nsys.stdin.read()\n")
    children = {mode: subprocess.Popen([sys.executable, "-c", script, mode], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True) for mode in ("catch", "plain")}
    try:
        for child in children.values():
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert catches_signal(children["catch"].pid, DRAIN_SIGNAL)
        assert not catches_signal(children["plain"].pid, DRAIN_SIGNAL)
    finally:
        for child in children.values():
            child.kill()
            child.wait()
