"""What the job-kind contract suite needs from a kind: how to build its job, run it and read its report.

Every registered kind (tasks/engine/kinds.py) ships `tests/<kind>/contract.py` with a `CONTRACT`
that satisfies `KindUnderTest`; the suite in test_kind_contract.py runs the same checks on each.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pytest_httpserver import HTTPServer

from tests.github_fake import files_under, gated_repository


@dataclass(frozen=True)
class Counts:
    """A kind's report in the engine's words."""

    done: int
    reused: int
    failed: list[str]
    batches_reused: int


@dataclass(frozen=True)
class GatedJob:
    """A kind's job whose batch at a gate waits until `release()`: a kill lands while that batch is in flight."""

    command: Callable[..., list[str]]
    """(destination, job, *extra): the job's `colabflow` arguments, as `KindUnderTest.command` gives them."""
    reached: Callable[[], bool]
    release: Callable[[], None]


class KindUnderTest(Protocol):
    """A job kind, as the contract suite drives it through the `colabflow` command."""

    items: int
    batch_size: int

    def make_source(self, root: Path) -> list[str]:
        """Write a deterministic job of `items` items (a multiple of `batch_size`) under `root`; its sources."""
        ...

    def command(self, sources: list[str], destination: Path, job: str, *extra: str) -> list[str]:
        """The `colabflow` arguments that run the job with `--json`, in batches of `batch_size`."""
        ...

    def counts(self, report: dict[str, Any]) -> Counts:
        """The report's figures."""
        ...

    def gated_job(self, root: Path, at_batch: int, server: HTTPServer) -> AbstractContextManager[GatedJob]:
        """The job `make_source` writes under `root`, set so that batch `at_batch` waits at a gate, before any of
        its items is done, until released (and on exit); `server` may serve its source."""
        ...

    def add_poison_item(self, root: Path) -> str:
        """Add one item under `root` that cannot be processed; its id."""
        ...

    def tamper(self, job_dir: Path) -> None:
        """Change one output of a finished job folder."""
        ...

    def outputs(self, job_dir: Path) -> dict[str, bytes]:
        """Every output of the job folder that must be the same in equal runs, by name."""
        ...

    def webhook_arguments(self, url: str, secret_block: str) -> list[str]:
        """Extra arguments that send the report to `url`, signed with the key in `secret_block`."""
        ...


@contextmanager
def served_folder_job(kind: KindUnderTest, root: Path, at_batch: int, server: HTTPServer) -> Iterator[GatedJob]:
    """`gated_job` for a kind that reads a folder: the folder served as a GitHub repository whose read of the first
    item of batch `at_batch` is held (tests/github_fake.py). The kind batches items in path order."""
    kind.make_source(root)
    files = files_under(root, "source")
    with gated_repository(server, files, sorted(files)[at_batch * kind.batch_size]) as served:
        def command(destination: Path, job: str, *extra: str) -> list[str]:
            return kind.command([served.location("source")], destination, job, "--github-api-url", served.api_url,
                                *extra)

        yield GatedJob(command, served.gate.reached.is_set, served.gate.release)


def contract_for(kind: str) -> KindUnderTest:
    """The kind's contract adapter, `tests/<kind>/contract.py:CONTRACT`."""
    contract: KindUnderTest = importlib.import_module(f"tests.{kind}.contract").CONTRACT
    return contract
