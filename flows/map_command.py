"""`colabflow map`: its arguments, and the run of the map-items flow from the command line.

The command line runs as its caller, who may already run any code, so it trusts the function it
is given (tasks/engine/user_code.py); a run on the pool is held to the worker's allowlist.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flows.job_arguments import add_run_arguments, add_source_arguments, webhook_from
from tasks.batch_map.parameters import MapJob
from tasks.engine.user_code import import_code, parse_code_path, trust_caller
from tasks.errors import ColabflowError
from tasks.storage.stores import StorageAccess


def add_map_parser(commands: Any) -> None:
    """The `map` subcommand's arguments."""
    command = commands.add_parser("map", help="run a function over items in batches into a job folder")
    command.add_argument("items", help="a JSONL file (one object per line) or a folder of files, at any scheme we read")
    command.add_argument("destination", help="where <job>/ goes: a directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH")
    command.add_argument("--job", required=True, help="job name: letters, digits, '.', '_', '-'")
    command.add_argument("--function", required=True, metavar="MOD:NAME",
                         help="package.module:name of a function f(batch) or of a class built once per worker")
    command.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="a constructor argument of the class (repeatable; values are strings)")
    command.add_argument("--batch-size", type=int, default=8, help="items per call (default 8)")
    command.add_argument("--output", default="jsonl", help="jsonl, safetensors or npz (default jsonl)")
    command.add_argument("--id-field", default="id", help="the JSONL field that names each item (default id)")
    command.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    command.add_argument("--precision", default="fp32", help="fp32, fp16 or bf16 (default fp32)")
    command.add_argument("--limit", type=int, help="run only the first N items, as a trial")
    add_run_arguments(command)
    add_source_arguments(command)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs as a dict; a pair without '=' is refused."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ColabflowError(f"--param {pair!r} is not KEY=VALUE; write it as, for example, --param model=small")
        params[key] = value
    return params


def map_request(arguments: argparse.Namespace, access: StorageAccess) -> MapJob:
    """Build and validate the flow's parameters from the command line."""
    callback = webhook_from(arguments)
    return MapJob(
        items=arguments.items, destination=arguments.destination, results=arguments.results, access=access,
        job=arguments.job, function=arguments.function, params=parse_params(arguments.param),
        id_field=arguments.id_field, batch_size=arguments.batch_size, output=arguments.output,
        device=arguments.device, precision=arguments.precision, limit=arguments.limit,
        task_runs=arguments.task_runs, callback=callback, refresh_checkpoints=arguments.refresh_checkpoints,
        compute_budget=arguments.compute_budget, follow_symlinks=arguments.follow_symlinks,
    )


def run_map(arguments: argparse.Namespace, access: StorageAccess) -> int:
    """Run the map-items flow in this process and print its report; 1 when an item failed."""
    request = map_request(arguments, access)
    trust_caller()
    import_code(parse_code_path(request.function))  # a module that does not import fails here, not in a flow run
    from flows.map_items import map_items
    from flows.server_reaper import start_server_reaper

    start_server_reaper()
    report = map_items(request)
    print(report.model_dump_json() if arguments.json else report.model_dump_json(indent=2))
    if report.stopped_reason is not None:
        print(f"stopped: {report.stopped_reason}", file=sys.stderr)
    return 1 if report.failed or report.stopped_reason is not None else 0
