"""`colabflow iterate`: its arguments, and the run of the iterate flow from the command line.

The command line runs as its caller, who may already run any code, so it trusts the program it
is given (tasks/engine/user_code.py); a run on the pool is held to the worker's allowlist.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flows.job_arguments import webhook_from
from flows.map_command import parse_params
from tasks.engine.user_code import trust_caller
from tasks.iterations.parameters import IterateJob
from tasks.storage.stores import StorageAccess


def add_iterate_parser(commands: Any) -> None:
    """The `iterate` subcommand's arguments."""
    command = commands.add_parser("iterate", help="run an iterative program (hill climb, training) with exact resume")
    command.add_argument("destination", help="where <job>/ goes: a directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH")
    command.add_argument("--job", required=True, help="job name: letters, digits, '.', '_', '-'")
    command.add_argument("--program", required=True, metavar="MOD:NAME",
                         help="package.module:Name of a class with step(), state_dict() and load_state_dict()")
    command.add_argument("--iterations", required=True, type=int, help="iterations to reach (numbered 0 to N-1)")
    command.add_argument("--checkpoint-every-iterations", type=int, metavar="K", help="checkpoint every K iterations")
    command.add_argument("--checkpoint-every-minutes", type=float, metavar="M", default=30.0,
                         help="checkpoint once M minutes have passed (default 30; 0 turns it off)")
    command.add_argument("--keep-last", type=int, default=3, help="checkpoints kept (default 3)")
    command.add_argument("--seed", type=int, default=0, help="seed of random, numpy and torch (default 0)")
    command.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="a parameter of the program (repeatable; values are strings)")
    command.add_argument("--early-stop", metavar="METRIC:PATIENCE:min|max",
                         help="stop once METRIC has not improved in PATIENCE reports")
    command.add_argument("--objective", metavar="METRIC:min|max", help="the metric whose best the report shows")
    command.add_argument("--compute-budget", metavar="NAME", help="ComputeBudget block: unit rates and quota")
    command.add_argument("--webhook", metavar="URL", help="POST the job report to this http(s) URL")
    command.add_argument("--webhook-secret-block", metavar="NAME", help="Secret block with the HMAC key")
    command.add_argument("--json", action="store_true", help="print the job report as one JSON line last")


def iterate_request(arguments: argparse.Namespace, access: StorageAccess) -> IterateJob:
    """Build and validate the flow's parameters from the command line."""
    minutes = arguments.checkpoint_every_minutes
    return IterateJob(
        destination=arguments.destination, access=access, job=arguments.job, program=arguments.program,
        iterations=arguments.iterations, params=parse_params(arguments.param), seed=arguments.seed,
        checkpoint_every_iterations=arguments.checkpoint_every_iterations,
        checkpoint_every_minutes=None if minutes == 0 else minutes, keep_last=arguments.keep_last,
        early_stop=arguments.early_stop, objective=arguments.objective, callback=webhook_from(arguments),
        compute_budget=arguments.compute_budget,
    )


def run_iterate(arguments: argparse.Namespace, access: StorageAccess) -> int:
    """Run the iterate flow in this process and print its report; 1 when it stopped before the end."""
    request = iterate_request(arguments, access)
    trust_caller()
    # Imported here, not at the top: the program module brings in torch (about a second), which
    # every other colabflow command would otherwise pay on start.
    from tasks.iterations.program import load_program_class

    load_program_class(request.program)  # a program that does not import fails here, not in a flow run
    from flows.iterate import iterate
    from flows.server_reaper import start_server_reaper

    start_server_reaper()
    report = iterate(request)
    print(report.model_dump_json() if arguments.json else report.model_dump_json(indent=2))
    if report.stopped_reason in ("drain", "quota"):
        print(f"stopped: {report.stopped_reason}; rerun the same command to resume", file=sys.stderr)
        return 1
    return 0
