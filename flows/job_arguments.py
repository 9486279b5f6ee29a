"""The command-line arguments job commands share: checkpoints, task runs, budget, webhook, --json; sources' links."""

from __future__ import annotations

import argparse

from tasks.engine.parameters import WebhookCallback


def add_run_arguments(command: argparse.ArgumentParser) -> None:
    """--results, --task-runs, --refresh-checkpoints, --compute-budget, --webhook(-secret-block) and --json."""
    command.add_argument("--results", help="where batch checkpoints go (default: the destination)")
    command.add_argument("--task-runs", type=int, default=64, help="most task runs the batches are spread over (default 64)")
    command.add_argument("--refresh-checkpoints", action="store_true", help="ignore saved batch checkpoints")
    command.add_argument("--compute-budget", metavar="NAME", help="ComputeBudget block: unit rates and quota")
    command.add_argument("--webhook", metavar="URL", help="POST the job report to this http(s) URL")
    command.add_argument("--webhook-secret-block", metavar="NAME", help="Secret block with the HMAC key")
    command.add_argument("--json", action="store_true", help="print the job report as one JSON line last")


def add_source_arguments(command: argparse.ArgumentParser) -> None:
    """--follow-symlinks, for the commands that read source folders."""
    command.add_argument(
        "--follow-symlinks", action="store_true",
        help="also take symlinks in a local source that point outside it, and enter linked folders "
        "(default: leave them out and name them in the report; loops and dangling links are always left out)",
    )


def webhook_from(arguments: argparse.Namespace) -> WebhookCallback | None:
    """The webhook the command line asks for, if any."""
    return WebhookCallback(url=arguments.webhook, secret_block=arguments.webhook_secret_block) if arguments.webhook else None
