"""What the job-kind contract suite needs from a kind: how to build its job, run it and read its report.

Every registered kind (tasks/engine/kinds.py) ships `tests/<kind>/contract.py` with a `CONTRACT`
that satisfies `KindUnderTest`; the suite in test_kind_contract.py runs the same checks on each.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Counts:
    """A kind's report in the engine's words."""

    done: int
    reused: int
    failed: list[str]
    batches_reused: int


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


def contract_for(kind: str) -> KindUnderTest:
    """The kind's contract adapter, `tests/<kind>/contract.py:CONTRACT`."""
    contract: KindUnderTest = importlib.import_module(f"tests.{kind}.contract").CONTRACT
    return contract
