"""Batch map under the job-kind contract suite (tests/engine/test_kind_contract.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer

from tests.engine.kind_contract import Counts, GatedJob

FUNCTION = "tasks.batch_map.examples.text:measure"
GATED_FUNCTION = "tests.batch_map.gated:GatedMeasure"


class BatchMapUnderTest:
    """1,200 records in batches of 10, through the example function that measures text."""

    items = 1200
    batch_size = 10

    def make_source(self, root: Path) -> list[str]:
        root.mkdir(parents=True, exist_ok=True)
        items = root / "items.jsonl"
        items.write_text("".join(json.dumps({"id": f"item-{index:05d}", "text": "word " * (index % 17 + 1)}) + "\n"
                                 for index in range(self.items)))
        return [str(items)]

    def command(self, sources: list[str], destination: Path, job: str, *extra: str) -> list[str]:
        return self.with_function(FUNCTION, sources, destination, job, *extra)

    def with_function(self, function: str, sources: list[str], destination: Path, job: str, *extra: str) -> list[str]:
        return ["map", *sources, str(destination), "--job", job, "--function", function,
                "--batch-size", str(self.batch_size), "--device", "cpu", "--json", *extra]

    def counts(self, report: dict[str, Any]) -> Counts:
        return Counts(done=report["items_done"], reused=report["items_reused"],
                      failed=[failure["item_id"] for failure in report["failed"]],
                      batches_reused=report["batches_reused"])

    @contextmanager
    def gated_job(self, root: Path, at_batch: int, server: HTTPServer) -> Iterator[GatedJob]:
        """The records through `GATED_FUNCTION`, which holds the batch of the first item of `at_batch`."""
        sources, gate = self.make_source(root), root / "gate"
        gate_params = ["--param", f"gate={gate}", "--param", f"hold_at=item-{at_batch * self.batch_size:05d}"]

        def command(destination: Path, job: str, *extra: str) -> list[str]:
            return self.with_function(GATED_FUNCTION, sources, destination, job, *gate_params, *extra)

        release = Path(f"{gate}.release").touch
        try:
            yield GatedJob(command, Path(f"{gate}.reached").exists, release)
        finally:
            release()

    def add_poison_item(self, root: Path) -> str:
        with (root / "items.jsonl").open("a") as items:
            items.write(json.dumps({"id": "poison", "text": "x", "fail": True}) + "\n")
        return "poison"

    def tamper(self, job_dir: Path) -> None:
        output = sorted((job_dir / "outputs").glob("*.jsonl"))[3]
        output.write_bytes(output.read_bytes().replace(b'"words"', b'"wordz"', 1))

    def outputs(self, job_dir: Path) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in (job_dir / "outputs").glob("*.jsonl")}

    def webhook_arguments(self, url: str, secret_block: str) -> list[str]:
        return ["--webhook", url, "--webhook-secret-block", secret_block]


CONTRACT = BatchMapUnderTest()
