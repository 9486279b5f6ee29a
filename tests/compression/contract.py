"""Compression under the job-kind contract suite (tests/engine/test_kind_contract.py)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer

from tests.conftest import make_chunks
from tests.engine.kind_contract import Counts, GatedJob, served_folder_job


class CompressionUnderTest:
    """120 chunks of 16 KiB in batches of 10."""

    items = 120
    batch_size = 10

    def make_source(self, root: Path) -> list[str]:
        return [str(make_chunks(root, count=self.items, size=16 * 1024))]

    def command(self, sources: list[str], destination: Path, job: str, *extra: str) -> list[str]:
        return ["compress", *sources, str(destination), "--job", job, "--batch-size", str(self.batch_size),
                "--codec", "cpu", "--json", *extra]

    def counts(self, report: dict[str, Any]) -> Counts:
        return Counts(done=report["compressed"], reused=report["reused"],
                      failed=[failure["item_id"] for failure in report["failed"]],
                      batches_reused=report["batches_reused"])

    def gated_job(self, root: Path, at_batch: int, server: HTTPServer) -> AbstractContextManager[GatedJob]:
        return served_folder_job(self, root, at_batch, server)

    def add_poison_item(self, root: Path) -> str:
        name = "poison\x1bname.txt"
        (root / name).write_bytes(b"an id with a control character never names a file")
        return name

    def tamper(self, job_dir: Path) -> None:
        member = job_dir / "chunks" / "part-00007.txt.gz"
        member.write_bytes(member.read_bytes()[:-8])

    def outputs(self, job_dir: Path) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in (job_dir / "chunks").glob("*.gz")}

    def webhook_arguments(self, url: str, secret_block: str) -> list[str]:
        return ["--webhook", url, "--webhook-secret-block", secret_block]


CONTRACT = CompressionUnderTest()
