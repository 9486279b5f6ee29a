"""Pool soak: one server, many workers, jobs of all four kinds, and a worker killed with kill -9 again and again.

Run from the repo root:
`python -m benchmarks.pool_soak --workers 8 --jobs 24 --kills 5 --database postgresql --json`.
It starts PostgreSQL (tests/postgres.py) or uses SQLite, starts one real Prefect server on it,
runs `colabflow setup` and `prefect deploy` as the docs say, starts the workers (each serves
`any` and one GPU class queue, as a lab's runtimes do), and submits the jobs, the kinds in turn,
with `prefect deployment run`, four at a time. Every `--kill-every` seconds it kills a random
worker with every descendant (a runtime vanishing) and starts a replacement on the same queues.
When every run has ended, each job is checked with `colabflow verify` against the items it was
given. Figures: `completed`, `lost` and `duplicated` items, `stuck` runs (left Running, Pending
or Late), the start delay from submission to Running (`p50_start_s`, `p99_start_s`, server
clock), each kill's recovery (from the kill to the killed run's next Running), the server's CPU
seconds and the database's size. A human summary goes to stderr; with `--json` the last stdout
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any
from uuid import UUID

import psutil

from benchmarks.soak_jobs import SoakJob, build_jobs, check_outputs
from deployments.drain_events import flow_run_id_of
from deployments.setup import QUEUES
from tests.pool import deploy, kill_machine, run_id_in, start_worker
from tests.postgres import database_size_bytes, postgres_server, psql
from tests.servers import prefect_server, server_environment, wait_until

HOME_PROGRAM = "tasks.iterations.examples.hill_climb:HillClimb"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
STUCK_STATES = {"RUNNING", "PENDING"}
SUBMITTERS = 4
SUBMIT_ATTEMPTS = 5
SUBMIT_BACKOFF_S = 5.0
REPO_ROOT = Path(__file__).resolve().parent.parent
GPU_QUEUES = tuple(queue for queue in QUEUES if queue != "any")


@dataclass
class Pool:
    """The live workers, each with the queues it serves, and every kill so far."""

    env: dict[str, str]
    logs: Path
    workers: list[tuple[Popen[bytes], tuple[str, ...]]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)

    def start(self, queues: tuple[str, ...]) -> None:
        number = len(self.workers) + len(self.kills) + 1
        arguments = [argument for queue in queues for argument in ("--queue", queue)]
        self.workers.append((start_worker(self.env, self.logs / f"worker-{number:02d}.log", *arguments), queues))

    def kill(self, process: Popen[bytes]) -> dict[str, Any]:
        """SIGKILL a worker with its tree, note the run it held, start a replacement on its queues."""
        queues = next(served for worker, served in self.workers if worker is process)
        self.workers = [(worker, served) for worker, served in self.workers if worker is not process]
        held = running_flow_run(process)
        kill_machine(process)
        kill = {"at": time.time(), "flow_run_id": held}
        self.kills.append(kill)
        self.start(queues)
        return kill

    def holder(self, flow_run_id: UUID) -> Popen[bytes] | None:
        """The worker executing `flow_run_id`, if one is."""
        return next((process for process, _ in self.workers if running_flow_run(process) == str(flow_run_id)), None)

    def stop(self) -> None:
        for process, _ in self.workers:
            if process.poll() is None:
                kill_machine(process)


def running_flow_run(worker: Popen[bytes]) -> str | None:
    """The flow run a worker's tree is executing, from its flow-run process's environment."""
    try:
        children = psutil.Process(worker.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    return next((run_id for child in children if (run_id := flow_run_id_of(child))), None)


@dataclass(frozen=True)
class Submitted:
    """What a kill plan sees: each job's flow run id once submitted, and whether every run has ended."""

    run_ids: dict[str, UUID]
    all_ended: Callable[[], bool]


KillPlan = Callable[[Pool, Submitted], None]


def every_kill_timed(kill_every: float, kills: int, seed: int) -> KillPlan:
    """The benchmark's plan: every `kill_every` seconds, kill a random worker, `kills` times (fewer if all runs ended)."""
    chooser = random.Random(seed)

    def plan(pool: Pool, submitted: Submitted) -> None:
        for _ in range(kills):
            deadline = time.monotonic() + kill_every
            while time.monotonic() < deadline:
                if submitted.all_ended():
                    return
                time.sleep(0.5)
            pool.kill(chooser.choice(pool.workers)[0])

    return plan


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    """PostgreSQL's URL for `postgresql`; None (the server's own SQLite) for `sqlite`."""
    with postgres_server() if kind == "postgresql" else nullcontext() as url:
        yield url


def server_cpu_seconds(api_url: str) -> float:
    """User and system CPU seconds of the `prefect server start` process listening on the API's port."""
    port = int(api_url.rsplit(":", 1)[1].split("/", 1)[0])
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "server" in cmdline and "start" in cmdline and str(port) in cmdline:
            times = process.cpu_times()
            children = sum(child.cpu_times().user + child.cpu_times().system for child in process.children(recursive=True))
            return round(float(times.user + times.system + children), 1)
    raise RuntimeError(f"no prefect server process on port {port}")


def sqlite_size_bytes(home: Path) -> int:
    return sum(path.stat().st_size for path in home.glob("prefect.db*"))


def completed_in_database(url: str | None, home: Path) -> int:
    """Completed flow runs, read from the database itself with its own tool (psql, or Python's sqlite3)."""
    query = "select count(*) from flow_run where state_type = 'COMPLETED'"
    if url:
        return int(psql(url, query))
    with closing(sqlite3.connect(home / "prefect.db")) as database:
        return int(database.execute(query).fetchone()[0])


def run_history(client: Any, flow_run_id: UUID) -> list[Any]:
    return sorted(client.read_flow_run_states(flow_run_id), key=lambda state: state.timestamp)


def start_delays(client: Any, run_ids: list[UUID]) -> list[float]:
    """Seconds from each run's creation to its first Running state (server clock)."""
    delays = []
    for run_id in run_ids:
        created = client.read_flow_run(run_id).created
        running = next((state for state in run_history(client, run_id) if state.type.value == "RUNNING"), None)
        if created and running:
            delays.append((running.timestamp - created).total_seconds())
    return delays


def recovery_seconds(client: Any, kill: dict[str, Any]) -> float | None:
    """From a kill to the next Running of the run the killed worker held; None if it held none."""
    if not kill["flow_run_id"]:
        return None
    later = [state for state in run_history(client, UUID(kill["flow_run_id"]))
             if state.type.value == "RUNNING" and state.timestamp.timestamp() > kill["at"]]
    return round(later[0].timestamp.timestamp() - kill["at"], 1) if later else None


def error_logs(client: Any, flow_run_id: UUID) -> list[str]:
    """The run's logs at ERROR and above, the last few, tracebacks included: why a run did not complete."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel

    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), level=LogFilterLevel(ge_=40)),
                            limit=200)
    return [log.message[-3000:] for log in logs[-5:]]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]), 1) if ordered else 0.0


@dataclass(frozen=True)
class SoakOptions:
    workers: int = 8
    jobs: int = 24
    scale: int = 100
    database: str = "sqlite"
    crash_after: str = "60s"
    reschedule_after: str = "10s"
    completion_timeout_s: float = 1800.0
    iterate_program: str = HOME_PROGRAM
    extra_env: dict[str, str] = field(default_factory=dict)


def run_soak(scratch: Path, options: SoakOptions, kill_plan: KillPlan) -> dict[str, Any]:
    """Start everything, submit the jobs, run the kill plan, wait for every run to end; the figures."""
    started = time.monotonic()
    jobs = build_jobs(scratch, options.jobs, options.scale, options.iterate_program)
    with database(options.database) as url, prefect_server(scratch / "server", database_url=url) as api_url:
        env = server_environment(scratch / "client-home", api_url)
        env.update(PREFECT_WORKER_QUERY_SECONDS="2", **options.extra_env)
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        deploy(env, "--crash-after", options.crash_after, "--reschedule-after", options.reschedule_after)
        pool = Pool(env, scratch)
        for number in range(options.workers):
            pool.start(("any", GPU_QUEUES[number % len(GPU_QUEUES)]))
        try:
            with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
                refusals: list[str] = []
                run_ids: dict[str, UUID] = {}
                ended: set[UUID] = set()

                def all_ended() -> bool:
                    for run_id in set(run_ids.values()) - ended:
                        state = client.read_flow_run(run_id).state
                        if state and state.type.value in FINAL_STATES and state.name != "Crashed":
                            ended.add(run_id)
                    return len(ended) == len(jobs)

                with ThreadPoolExecutor(1) as background:  # the kills start with the first submission
                    submitting = background.submit(submit, env, jobs, refusals, run_ids)
                    kill_plan(pool, Submitted(run_ids, all_ended))
                    submitting.result()
                wait_until(all_ended, options.completion_timeout_s, 2.0, "every run to end")
                figures = measure(client, jobs, run_ids, pool.kills, env)
                figures.update(submissions_refused=refusals, extra_runs=runs_beyond_one_per_job(client, jobs))
            figures["server_cpu_s"] = server_cpu_seconds(api_url)
            figures["database_bytes"] = database_size_bytes(url) if url else sqlite_size_bytes(scratch / "server")
            figures["completed_in_database"] = completed_in_database(url, scratch / "server")
        finally:
            pool.stop()
    return {"database": options.database, "workers": options.workers, "jobs": options.jobs, **figures,
            "wall_s": round(time.monotonic() - started, 1)}


def submit(env: dict[str, str], jobs: list[SoakJob], refusals: list[str], run_ids: dict[str, UUID]) -> None:
    """`prefect deployment run` for every job, SUBMITTERS at a time; each job's flow run id into `run_ids`."""

    def one(job: SoakJob) -> None:
        run_ids[job.name] = submit_one(env, job, refusals)

    with ThreadPoolExecutor(SUBMITTERS) as submitters:
        list(submitters.map(one, jobs))


def submit_one(env: dict[str, str], job: SoakJob, refusals: list[str]) -> UUID:
    """Submit one job; when the server refuses (an overloaded server answers 503 after the client's own
    retries), wait and submit again, as a user would, noting each refusal."""
    command = [sys.executable, "-m", "prefect", "deployment", "run", job.deployment,
               "--params", json.dumps({"request": job.request})]
    for attempt in range(SUBMIT_ATTEMPTS):
        result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            return run_id_in(result.stdout)
        refusals.append(f"{job.name}: {(result.stdout + result.stderr).strip().splitlines()[-1][:300]}")
        time.sleep(SUBMIT_BACKOFF_S * 2 ** attempt)
    raise RuntimeError(f"the server refused {job.name} {SUBMIT_ATTEMPTS} times: {refusals[-1]}")


def runs_beyond_one_per_job(client: Any, jobs: list[SoakJob]) -> int:
    """Flow runs of the soak's jobs beyond one each: a refused submission that the server created after all."""
    names = {job.name for job in jobs}
    counts: dict[str, int] = {}
    for run in client.read_flow_runs(limit=200):
        job = (run.parameters.get("request") or {}).get("job")
        if job in names:
            counts[job] = counts.get(job, 0) + 1
    return sum(count - 1 for count in counts.values())


def measure(client: Any, jobs: list[SoakJob], run_ids: dict[str, UUID], kills: list[dict[str, Any]],
            env: dict[str, str]) -> dict[str, Any]:
    """Completed runs, lost and duplicated items, stuck runs, start delays and recoveries."""
    states = {name: client.read_flow_run(run_id).state for name, run_id in run_ids.items()}
    checks = [check_outputs(job, env) for job in jobs]
    delays = start_delays(client, list(run_ids.values()))
    recoveries = [recovery_seconds(client, kill) for kill in kills]
    return {
        "completed": sum(1 for state in states.values() if state and state.name == "Completed"),
        "lost": sum(check["lost"] for check in checks),
        "duplicated": sum(check["duplicated"] for check in checks),
        "unverified": [check for check in checks if not check["verified"]],
        "stuck": sorted(name for name, state in states.items()
                        if state and (state.type.value in STUCK_STATES or state.name == "Late")),
        "not_completed": {name: {"state": f"{state.name}: {(state.message or '')[:200]}",
                                 "errors": error_logs(client, run_ids[name])}
                          for name, state in states.items() if state and state.name != "Completed"},
        "p50_start_s": percentile(delays, 0.5), "p99_start_s": percentile(delays, 0.99),
        "kills": len(kills), "kills_of_busy_workers": sum(1 for kill in kills if kill["flow_run_id"]),
        "recovery_s": [value for value in recoveries if value is not None],
        "mean_recovery_s": round(statistics.fmean([value for value in recoveries if value is not None]), 1)
        if any(value is not None for value in recoveries) else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills (default 60)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--scale", type=int, default=100, help="size of each job (default 100: 4000 chunks or records)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="colabflow-soak-"))
    try:
        options = SoakOptions(workers=args.workers, jobs=args.jobs, scale=args.scale, database=args.database)
        result = run_soak(scratch, options, every_kill_timed(args.kill_every, args.kills, args.seed))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, indent=2, default=str), file=sys.stderr)
    if args.json:
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
