"""The `colabflow` command: parse arguments, call a flow or a plain function, print the result.

Exit status: 0 success, 1 some items failed or did not verify, or the job stopped at its
compute-unit quota, 2 the job could not start.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from deployments.durations import parse_duration
from flows.analyze_command import add_analyze_parser, run_analyze
from flows.job_arguments import add_run_arguments, add_source_arguments, webhook_from
from flows.iterate_command import add_iterate_parser, run_iterate
from flows.map_command import add_map_parser, run_map
from tasks.compression.codecs import require_codec
from tasks.compression.parameters import CompressJob
from tasks.engine.cores import start_on_cores
from tasks.engine.item_hashes import hash_ahead
from tasks.engine.parameters import GitHubDispatchCallback, WebhookCallback
from tasks.errors import ColabflowError
from tasks.storage.locations import is_local
from tasks.storage.stores import StorageAccess

if TYPE_CHECKING:
    from tasks.engine.verify import JobCheck

# A first run on an empty PREFECT_HOME migrates the database before the temporary server
# answers; Prefect's default 20 s wait is too short for that on a small machine.
EPHEMERAL_STARTUP_SECONDS = "180"
# What a local compression job runs on the cores: hashing for its plan, then compressing.
LOCAL_WORK_MODULES = ["tasks.engine.item_hashes", "tasks.compression.chunk_codec"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colabflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    compress = commands.add_parser("compress", help="compress a folder of chunks into a job folder")
    compress.add_argument(
        "source", nargs="+", help="chunk files or folders: paths, file://, github://OWNER/REPO@REF/PATH, "
        "gs://BUCKET/PATH, gdrive://FOLDER_ID/PATH",
    )
    compress.add_argument("destination", help="where <job>/ goes: a directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH")
    add_run_arguments(compress)
    add_source_arguments(compress)
    compress.add_argument("--job", required=True, help="job name: letters, digits, '.', '_', '-'")
    compress.add_argument("--level", type=int, default=6, help="gzip level 0-9 (default 6)")
    compress.add_argument("--codec", default="auto", help="auto, cpu or gpu (default auto)")
    compress.add_argument("--batch-size", type=int, default=1024, help="most chunks per batch (default 1024)")
    compress.add_argument("--batch-bytes", type=int, default=64 * 1024 * 1024, help="most bytes per batch")
    compress.add_argument("--github-repo", metavar="OWNER/REPO", help="send repository_dispatch to this repo")
    compress.add_argument("--github-token-block", metavar="NAME", help="Secret block with the GitHub token")
    compress.add_argument("--github-event-type", default="colabflow-job-finished", help="event_type to send")
    add_access_arguments(compress)

    add_map_parser(commands)
    add_access_arguments(commands.choices["map"])
    add_analyze_parser(commands)
    add_access_arguments(commands.choices["analyze"])
    add_iterate_parser(commands)
    add_access_arguments(commands.choices["iterate"])

    restore = commands.add_parser("restore", help="restore every chunk of a job folder and check its sha256")
    restore.add_argument("job_dir", help="<destination>/<job>: a directory, gs://… or gdrive://…")
    restore.add_argument("out_dir", type=Path, help="directory that receives the restored chunks")
    add_access_arguments(restore)

    verify = commands.add_parser("verify", help="check every chunk of a job folder without writing")
    verify.add_argument("job_dir", help="<destination>/<job>: a directory, gs://… or gdrive://…")
    add_access_arguments(verify)

    status = commands.add_parser("status", help="chunks done, run state, attempts and worker of a job")
    status.add_argument("target", help="a job folder (<destination>/<job>) or a flow run id")
    status.add_argument("--offline", action="store_true", help="read only the job folder, not the Prefect API")
    status.add_argument("--compute-budget", metavar="NAME", help="ComputeBudget block to show the spend against")
    add_access_arguments(status)

    setup = commands.add_parser("setup", help="create the work pool, its queues and the recovery automations")
    setup.add_argument("--pool", default="colab-gpu", help="work pool name (default colab-gpu)")
    setup.add_argument("--max-attempts", type=int, default=10, help="times a crashed run is restarted (default 10)")
    setup.add_argument("--heartbeat", default="30s", help="flow run heartbeat interval, at least 30s")
    setup.add_argument("--crash-after", default="90s", help="silence after which a run is marked Crashed")
    setup.add_argument("--reschedule-after", default="30s", help="wait before a Crashed run is rescheduled")

    worker = commands.add_parser("worker", help="run a Prefect worker that knows its host's GPU and time budget")
    worker.add_argument("--pool", default="colab-gpu", help="work pool to serve (default colab-gpu)")
    worker.add_argument("--queue", action="append", help="queue to serve (repeatable); default: GPU class + any")
    worker.add_argument("--name", help="worker name (default: host-gpuclass-pid)")
    worker.add_argument("--limit", type=int, default=1, help="flow runs at once (default 1)")
    worker.add_argument("--time-budget", help="how long this host may run, e.g. 24h (default: the host's own)")
    worker.add_argument("--drain-margin", default="15m", help="stop taking runs this long before the budget ends")
    worker.add_argument("--idle-release", metavar="MINUTES", help="release the host after this long without a run")
    worker.add_argument("--check-every", default="5s", help="how often the budget and idleness are checked")
    return parser


def add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """Credentials for remote locations: names of Prefect blocks, never secrets."""
    parser.add_argument("--gcp-credentials", metavar="NAME", help="GcpCredentials block for gs:// (default: ADC)")
    parser.add_argument("--drive", metavar="NAME", help="DriveFolder block for gdrive:// (default: ADC)")
    parser.add_argument("--github", metavar="NAME", help="Secret block with a GitHub token for github://")
    parser.add_argument("--github-api-url", default="https://api.github.com", help="GitHub API base URL")


def access_from(arguments: argparse.Namespace) -> StorageAccess:
    return StorageAccess(
        gcp_credentials=arguments.gcp_credentials, drive=arguments.drive,
        github_token=arguments.github, github_api_url=arguments.github_api_url,
    )


def compress_request(arguments: argparse.Namespace) -> CompressJob:
    """Build and validate the flow's parameters from the command line."""
    callback: WebhookCallback | GitHubDispatchCallback | None = webhook_from(arguments)
    if callback is None and arguments.github_repo:
        if not arguments.github_token_block:
            raise ColabflowError("--github-repo needs --github-token-block NAME (a Secret block holding the token)")
        callback = GitHubDispatchCallback(
            repository=arguments.github_repo, token_block=arguments.github_token_block,
            event_type=arguments.github_event_type, api_url=arguments.github_api_url,
        )
    return CompressJob(
        source=arguments.source, destination=arguments.destination, results=arguments.results,
        access=access_from(arguments), job=arguments.job,
        codec=arguments.codec, level=arguments.level, batch_size=arguments.batch_size,
        batch_bytes=arguments.batch_bytes, task_runs=arguments.task_runs, callback=callback,
        refresh_checkpoints=arguments.refresh_checkpoints, compute_budget=arguments.compute_budget,
        follow_symlinks=arguments.follow_symlinks,
    )


def run_compress(arguments: argparse.Namespace) -> int:
    request = compress_request(arguments)
    require_codec(request.codec)
    if all(is_local(location) for location in [*request.source, request.destination]):
        start_on_cores(LOCAL_WORK_MODULES)  # the workers start, and hash, while Prefect is imported
        if not request.refresh_checkpoints:
            hash_ahead(request.source, request.access, request.follow_symlinks)
    from flows.compress_chunks import compress_chunks
    from flows.server_reaper import start_server_reaper

    start_server_reaper()
    report = compress_chunks(request)
    if arguments.json:
        print(report.model_dump_json())
    else:
        print(report.model_dump_json(indent=2))
    if report.stopped_reason is not None:
        print(f"stopped: {report.stopped_reason}", file=sys.stderr)
    return 1 if report.failed or report.stopped_reason is not None else 0


def run_check(arguments: argparse.Namespace, out_dir: Path | None, verb: str) -> int:
    """`restore` (compression's) or `verify` (every kind's, through its job record).

    Imported here, after `main` set the logging environment: the job record's module imports
    Prefect, whose settings are read once, at import.
    """
    from tasks.compression.restore import check_job
    from tasks.engine.verify import verify_job

    access = access_from(arguments)
    check = check_job(arguments.job_dir, out_dir, access) if out_dir else verify_job(arguments.job_dir, access)
    return print_check(check, verb)


def print_check(check: JobCheck, verb: str) -> int:
    for problem in check.problems:
        print(f"FAILED {problem.reason}", file=sys.stderr)
    good = check.items - len(check.problems)
    print(f"{verb} {good} of {check.items} items in {check.job_dir} ({check.bytes_checked} bytes), "
          f"{len(check.problems)} problems")
    return 1 if check.problems else 0


def run_setup(arguments: argparse.Namespace) -> int:
    from prefect.client.orchestration import get_client

    from deployments.setup import PoolSettings, setup_pool

    settings = PoolSettings(
        pool=arguments.pool, max_attempts=arguments.max_attempts,
        heartbeat_seconds=int(parse_duration(arguments.heartbeat)),
        zombie_after_seconds=int(parse_duration(arguments.crash_after)),
        reschedule_after_seconds=int(parse_duration(arguments.reschedule_after)),
    )
    with get_client(sync_client=True) as client:
        changes = setup_pool(client, settings)
    print("\n".join(changes) if changes else f"work pool {settings.pool!r} is already set up; nothing changed")
    return 0


def run_worker(arguments: argparse.Namespace) -> int:
    from deployments.bootstrap import (
        WorkerPlan,
        WorkerSupervisor,
        default_worker_name,
        queues_for,
    )
    from tasks.hosts import current_host

    host = current_host()
    gpu_class = host.gpu_class()
    budget = parse_duration(arguments.time_budget) if arguments.time_budget else host.time_budget_seconds()
    plan = WorkerPlan(
        pool=arguments.pool, queues=queues_for(gpu_class, arguments.queue),
        name=arguments.name or default_worker_name(gpu_class), limit=arguments.limit,
        time_budget_seconds=budget, drain_margin_seconds=parse_duration(arguments.drain_margin),
        idle_release_seconds=parse_duration(arguments.idle_release, "m") if arguments.idle_release else None,
        poll_seconds=parse_duration(arguments.check_every),
    )
    print(f"colabflow worker: GPU class {gpu_class}; serving {', '.join(plan.queues)} of pool {plan.pool}", flush=True)
    return WorkerSupervisor(plan, host).run()


def run_status(arguments: argparse.Namespace) -> int:
    from tasks.engine.spend import load_budget
    from tasks.engine.status import job_status

    access = access_from(arguments)
    budget = load_budget(arguments.compute_budget) if arguments.compute_budget else None
    if arguments.offline:
        status = job_status(arguments.target, None, access, budget)
    else:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            status = job_status(arguments.target, client, access, budget)
    print(status.model_dump_json(indent=2))
    return 0


def run_map_command(arguments: argparse.Namespace) -> int:
    return run_map(arguments, access_from(arguments))


def run_analyze_command(arguments: argparse.Namespace) -> int:
    return run_analyze(arguments, access_from(arguments))


def run_iterate_command(arguments: argparse.Namespace) -> int:
    return run_iterate(arguments, access_from(arguments))


COMMANDS = {
    "compress": run_compress, "map": run_map_command, "analyze": run_analyze_command, "iterate": run_iterate_command,
    "setup": run_setup, "worker": run_worker, "status": run_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_SECONDS)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "colabflow")
    try:
        if arguments.command in COMMANDS:
            return COMMANDS[arguments.command](arguments)
        if arguments.command == "restore":
            return run_check(arguments, arguments.out_dir, "restored")
        return run_check(arguments, None, "verified")
    except ValidationError as error:
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"]) or "parameters"
            given = problem.get("input")
            got = f" (got {given!r})" if problem["loc"] and not isinstance(given, (dict, list)) else ""
            print(f"error: {field}: {problem['msg']}{got}", file=sys.stderr)
        return 2
    except ColabflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
