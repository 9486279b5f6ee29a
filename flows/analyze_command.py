"""`colabflow analyze`: its arguments, and the run of the analyze-corpus flow from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from flows.job_arguments import add_run_arguments, add_source_arguments, webhook_from
from tasks.storage.stores import StorageAccess

if TYPE_CHECKING:
    from tasks.corpus.parameters import AnalyzeJob


def add_analyze_parser(commands: Any) -> None:
    """The `analyze` subcommand's arguments."""
    command = commands.add_parser("analyze", help="count a multilingual corpus per language and report its statistics")
    command.add_argument("sources", nargs="+", metavar="SOURCE", help="folders of UTF-8 text at any scheme we read")
    command.add_argument("destination", help="where <job>/ goes: a directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH")
    command.add_argument("--job", required=True, help="job name: letters, digits, '.', '_', '-'")
    command.add_argument("--languages", default="fr,en,es,de,sa,zh", help="comma-separated codes (default all six)")
    command.add_argument("--language-from", default="folder", help="folder (the first folder names it) or detect")
    command.add_argument("--compare-with", metavar="JOB", help="the job to compare with (default: the latest other report)")
    command.add_argument("--top", type=int, default=20, help="most frequent 1-, 2- and 3-grams to report (default 20)")
    command.add_argument("--batch-size", type=int, default=64, help="most documents per batch (default 64)")
    command.add_argument("--device", default="auto", help="where counting runs: auto, cpu or cuda (default auto)")
    add_run_arguments(command)
    add_source_arguments(command)


def analyze_request(arguments: argparse.Namespace, access: StorageAccess) -> AnalyzeJob:
    """Build and validate the flow's parameters from the command line (the language modules load here, not at start)."""
    from tasks.corpus.parameters import AnalyzeJob

    callback = webhook_from(arguments)
    return AnalyzeJob(
        sources=arguments.sources, destination=arguments.destination, results=arguments.results, access=access,
        job=arguments.job, languages=arguments.languages, language_from=arguments.language_from,
        compare_with=arguments.compare_with, top=arguments.top, batch_size=arguments.batch_size,
        device=arguments.device, task_runs=arguments.task_runs, callback=callback,
        refresh_checkpoints=arguments.refresh_checkpoints, compute_budget=arguments.compute_budget,
        follow_symlinks=arguments.follow_symlinks,
    )


def run_analyze(arguments: argparse.Namespace, access: StorageAccess) -> int:
    """Run the analyze-corpus flow in this process and print its summary; 1 when a document failed."""
    request = analyze_request(arguments, access)
    from flows.analyze_corpus import analyze_corpus
    from flows.server_reaper import start_server_reaper

    start_server_reaper()
    summary = analyze_corpus(request)
    print(summary.model_dump_json() if arguments.json else summary.model_dump_json(indent=2))
    if summary.stopped_reason is not None:
        print(f"stopped: {summary.stopped_reason}", file=sys.stderr)
    return 1 if summary.failed or summary.stopped_reason is not None else 0
