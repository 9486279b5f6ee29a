"""`colabflow worker`: run `prefect worker start` under a supervisor that knows the host.

The supervisor starts the worker in its own process group, forwards SIGTERM/SIGINT to it, stops
taking runs before the host's time budget ends (in-flight runs get SIGTERM and are rescheduled,
their finished batches already persisted), and releases an idle host exactly once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil

import flows
from deployments.drain_events import announce_drained, flow_run_id_of
from tasks.hosts import Host

STOP_GRACE_SECONDS = 120.0
# Sent at a drain, before SIGTERM, to the flow-run processes that catch it: an iterative job then
# checkpoints and has its run rescheduled itself (tasks/iterations/drain.py).
DRAIN_SIGNAL = signal.SIGUSR1


@dataclass(frozen=True)
class WorkerPlan:
    """What the worker serves and when it stops."""

    pool: str
    queues: tuple[str, ...]
    name: str
    limit: int
    time_budget_seconds: float | None
    drain_margin_seconds: float
    idle_release_seconds: float | None
    poll_seconds: float = 5.0


def queues_for(gpu_class: str, override: list[str] | None) -> tuple[str, ...]:
    """The queues to serve: the override, else the GPU class plus `any`."""
    if override:
        return tuple(dict.fromkeys(override))
    return (gpu_class,) if gpu_class == "any" else (gpu_class, "any")


def code_root() -> Path:
    """The folder that holds `flows/`: where deployments' entrypoints are resolved."""
    return Path(flows.__file__).resolve().parent.parent


def default_worker_name(gpu_class: str) -> str:
    return f"{socket.gethostname()}-{gpu_class}-{os.getpid()}"


def worker_environment() -> dict[str, str]:
    """The worker's environment: where the code is, and this Python's scripts first on PATH,
    so the job command (`python3 -m deployments.attempt_guard`, which runs `prefect flow-run
    execute`) uses the same installation as the worker."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "COLABFLOW_ROOT": str(code_root()), "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def worker_command(plan: WorkerPlan) -> list[str]:
    """The `prefect worker start` command line for a plan."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", plan.pool, "--type", "process",
               "--name", plan.name, "--limit", str(plan.limit)]
    for queue in plan.queues:
        command += ["--work-queue", queue]
    return command


class WorkerSupervisor:
    """Runs one worker process and decides when it stops."""

    def __init__(self, plan: WorkerPlan, host: Host, clock: Callable[[], float] = time.monotonic) -> None:
        self.plan = plan
        self.host = host
        self.clock = clock
        self.stop_requested: str | None = None
        self.released = False

    def run(self) -> int:
        """Start the worker and supervise it until it exits, drains or the host is released."""
        environment = worker_environment()
        worker = subprocess.Popen(worker_command(self.plan), env=environment, start_new_session=True)
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._supervise(worker)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if worker.poll() is None:
                announce_drained(stop_process_tree(worker), self.plan.pool)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = signal.Signals(signum).name

    def _supervise(self, worker: subprocess.Popen[bytes]) -> int:
        started = last_busy = self.clock()
        budget = self.plan.time_budget_seconds
        deadline = None if budget is None else started + budget - self.plan.drain_margin_seconds
        while True:
            code = worker.poll()
            if code is not None:
                print(f"colabflow worker: prefect worker exited with {code}", flush=True)
                return code
            now = self.clock()
            reason = self._stop_reason(worker, now, deadline, last_busy)
            if reason == "busy":
                last_busy = now
            elif reason is not None:
                print(f"colabflow worker: {reason}; stopping the worker", flush=True)
                announce_drained(stop_process_tree(worker), self.plan.pool)
                if reason.startswith("idle"):
                    self.host.release()
                    self.released = True
                return 0
            time.sleep(self.plan.poll_seconds)

    def _stop_reason(
        self, worker: subprocess.Popen[bytes], now: float, deadline: float | None, last_busy: float
    ) -> str | None:
        if self.stop_requested:
            return f"received {self.stop_requested}"
        if deadline is not None and now >= deadline:
            return "time budget ends soon: draining (runs in flight are rescheduled)"
        if flow_run_processes(worker.pid):
            return "busy"
        idle = self.plan.idle_release_seconds
        if idle is not None and now - last_busy >= idle:
            return f"idle for {idle:.0f} s: releasing the host"
        return None


def flow_run_processes(worker_pid: int) -> list[psutil.Process]:
    """The worker's descendants: the flow runs it is executing."""
    try:
        return list(psutil.Process(worker_pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def stop_process_tree(worker: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> list[str]:
    """Stop the worker without losing its runs; the flow run ids of the runs that ended by the drain.

    The worker is frozen first (SIGSTOP) so it takes no new run. A flow-run process that catches
    DRAIN_SIGNAL (an iterative job) gets it first: it finishes its step, checkpoints and has its
    run rescheduled, and its run is given `grace` seconds to end that way. Then each flow run left
    gets SIGTERM, which reschedules it (`PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule`).
    Signalling the worker's whole group at once is not enough: the worker's own shutdown stops the
    run supervisor before it can pass the intent on, and the run carries on unsupervised. What is
    still alive after `grace` seconds is killed, and so is the frozen worker.
    """
    try:
        supervisor = psutil.Process(worker.pid)
        descendants = supervisor.children(recursive=True)
        runs = supervisor.children()
        supervisor.suspend()
    except psutil.NoSuchProcess:
        worker.wait()
        return []
    flow_run_ids = {run.pid: run_id for run in runs if (run_id := flow_run_id_of(run))}
    draining = [run for run in runs if _ask_to_checkpoint(run)]
    _wait_until_exited(draining, grace)
    for run in runs:
        _signal_quietly(run, signal.SIGTERM)
    _wait_until_exited(runs, grace)
    drained = [flow_run_ids[run.pid] for run in runs if run.pid in flow_run_ids and _exited(run)]
    for process in [*descendants, supervisor]:
        _signal_quietly(process, signal.SIGKILL)
    worker.wait()
    return drained


def _ask_to_checkpoint(run: psutil.Process) -> bool:
    """Send DRAIN_SIGNAL to the run's processes that catch it; whether any did."""
    try:
        catching = [process for process in [run, *run.children(recursive=True)] if catches_signal(process.pid, DRAIN_SIGNAL)]
    except psutil.NoSuchProcess:
        return False
    for process in catching:
        _signal_quietly(process, DRAIN_SIGNAL)
    return bool(catching)


def catches_signal(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (its `SigCgt` mask on Linux); False where unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        return False
    return False


def _exited(process: psutil.Process) -> bool:
    """Gone, or a zombie: a run that exits under the frozen worker stays unreaped until it is killed."""
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _wait_until_exited(processes: list[psutil.Process], timeout: float, every: float = 0.1) -> None:
    """Poll until every process has exited (zombies included) or `timeout` passes.

    `psutil.wait_procs` counts a zombie as running, so it waited out the whole grace period after
    every drain: the frozen worker cannot reap its runs.
    """
    deadline = time.monotonic() + timeout
    while not all(_exited(process) for process in processes) and time.monotonic() < deadline:
        time.sleep(every)


def _signal_quietly(process: psutil.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except psutil.NoSuchProcess:
        pass
