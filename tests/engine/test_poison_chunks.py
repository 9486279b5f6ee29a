"""Poison chunks: one chunk that keeps failing is quarantined alone, and a rerun tries it again."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.compress_chunks import compress_chunks
from tasks.compression.kind import JOB_KIND, compress_batch, prepare_job
from tasks.compression.models import JobReport
from tasks.compression.parameters import CompressJob
from tasks.compression.restore import check_job
from tasks.engine.batches import salvage_batch
from tasks.engine.checkpoints import TASK_RUN_PREFIX
from tasks.engine.item_attempts import ITEM_ATTEMPTS, ITEM_RETRY_SECONDS_VARIABLE
from tasks.engine.planning import plan_job
from tasks.errors import is_retryable
from tasks.storage.github import DEFAULT_POLICY
from tasks.storage.stores import StorageAccess
from tests.conftest import make_chunks
from tests.github_fake import git_sha, serve_repository
from tests.jobs import recipes_of
from tests.servers import server_environment, wait_until

FILES = {f"data/part-{index}.txt": f"line {index}: the quick brown fox\n".encode() * 200 for index in range(4)}
POISON = "data/part-2.txt"
BLOB_ATTEMPTS = DEFAULT_POLICY.attempts


@pytest.fixture(autouse=True)
def quick_chunk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are still tried ITEM_ATTEMPTS times, without the seconds between tries."""
    monkeypatch.setenv(ITEM_RETRY_SECONDS_VARIABLE, "0")


class FlakyBlob:
    """One blob's answers: its bytes for the first `good` requests, then 503 until `healed`."""

    def __init__(self, data: bytes, good: int = 0) -> None:
        self.data, self.good, self.healed, self.requests = data, good, False, 0

    def __call__(self, request: Request) -> Response:
        self.requests += 1
        if self.healed or self.requests <= self.good:
            return Response(self.data)
        return Response("unavailable", status=503, headers={"Retry-After": "0"})


def poisoned_repository(server: HTTPServer, blob: FlakyBlob) -> str:
    """Serve FILES with the POISON blob answered by `blob`; its handler is found before the healthy one."""
    server.expect_request(re.compile(rf"/repos/.+/git/blobs/{git_sha(blob.data)}")).respond_with_handler(blob)
    return serve_repository(server, FILES)


def run_job(source: str, destination: Path, access: StorageAccess | None = None, batch_size: int = 256,
            follow_symlinks: bool = False) -> JobReport:
    request = CompressJob(source=[source], destination=str(destination), job="job",
                          access=access or StorageAccess(), batch_size=batch_size, follow_symlinks=follow_symlinks)
    report = compress_chunks(request)
    assert isinstance(report, JobReport)
    return report


def batch_run_counts(flow_run_id: UUID) -> list[int]:
    """How many times each batch task of a flow run ran (1 each when no batch was retried).

    Task-run states reach the API as events, so this polls until every batch run shows a final state.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def finished_batches() -> list[int]:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        batches = [run for run in runs if run.name.startswith(TASK_RUN_PREFIX)]
        done = batches and all(run.state is not None and run.state.is_final() for run in batches)
        return [run.run_count for run in batches] if done else []

    return wait_until(finished_batches, 60, what="the batch task runs' final states at the API")  # type: ignore[no-any-return]


@pytest.mark.usefixtures("prefect_api")
def test_a_blob_that_always_answers_503_is_quarantined_alone(httpserver: HTTPServer, tmp_path: Path) -> None:
    """Through the CLI: K tries of the poison chunk, its reason in report and quarantine, exit 1, the rest verify."""
    blob = FlakyBlob(FILES[POISON])
    repository = poisoned_repository(httpserver, blob)
    env = server_environment(tmp_path / "client-home", os.environ["PREFECT_API_URL"])
    env[ITEM_RETRY_SECONDS_VARIABLE] = "0"
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "compress", f"github://{repository}@main/data", str(tmp_path / "out"),
         "--job", "gh", "--github-api-url", httpserver.url_for("/"), "--batch-size", "2", "--json"],
        capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2], timeout=300,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["chunks_total"], report["compressed"]) == (4, 3)
    [failure] = report["failed"]
    assert failure["item_id"] == "part-2.txt"
    assert "GitHub answered 503" in failure["reason"] and "its store's retries ran out" in failure["reason"]
    assert blob.requests == BLOB_ATTEMPTS
    quarantine = (tmp_path / "out" / "gh" / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in quarantine] == [failure]
    manifest = (tmp_path / "out" / "gh" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["chunk_id"] for line in manifest) == ["part-0.txt", "part-1.txt", "part-3.txt"]
    assert check_job(tmp_path / "out" / "gh").problems == []


@pytest.mark.usefixtures("prefect_api")
def test_a_chunk_that_fails_inside_its_batch_fails_alone_and_a_rerun_redoes_it(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """The blob reads once (the plan), then 503s: its batch-mates complete; once healed, a rerun compresses it."""
    blob = FlakyBlob(FILES[POISON], good=1)
    repository = poisoned_repository(httpserver, blob)
    access = StorageAccess(github_api_url=httpserver.url_for("/"))
    source = f"github://{repository}@main/data"

    first = run_job(source, tmp_path / "out", access, batch_size=10)
    assert (first.compressed, first.batches_total, [failure.item_id for failure in first.failed]) == (3, 1, ["part-2.txt"])
    assert "its store's retries ran out" in first.failed[0].reason
    assert blob.requests == 1 + BLOB_ATTEMPTS
    assert len((tmp_path / "out" / "job" / "manifest.jsonl").read_text().splitlines()) == 3

    blob.healed = True
    second = run_job(source, tmp_path / "out", access, batch_size=10)
    assert (second.compressed, second.reused, second.failed) == (1, 3, [])
    assert (tmp_path / "out" / "job" / "quarantine.jsonl").read_bytes() == b""
    assert len((tmp_path / "out" / "job" / "manifest.jsonl").read_text().splitlines()) == 4
    assert check_job(tmp_path / "out" / "job").problems == []


@pytest.mark.usefixtures("prefect_api")
def test_a_name_too_long_for_its_recipe_fails_alone_without_batch_retries(tmp_path: Path) -> None:
    """A 250-byte name fits as a source file but not with '.recipe.json': that chunk fails once, its batch runs once."""
    source = make_chunks(tmp_path / "source", 3, 1000)
    long_name = "n" * 246 + ".txt"
    (source / long_name).write_bytes(b"a chunk with a long name\n" * 40)
    request = CompressJob(source=[str(source)], destination=str(tmp_path / "out"), job="job", batch_size=10)
    state = compress_chunks(request, return_state=True)
    report = state.result()
    assert isinstance(report, JobReport)
    assert report.compressed == 3 and [failure.item_id for failure in report.failed] == [long_name]
    reason = report.failed[0].reason
    assert long_name in reason and re.search(r"too long|bytes", reason), reason
    assert "times the same way" not in reason
    assert state.state_details.flow_run_id is not None
    assert batch_run_counts(state.state_details.flow_run_id) == [1]
    assert check_job(tmp_path / "out" / "job").problems == []


def test_a_chunk_replaced_by_a_directory_after_planning_fails_at_once_inside_its_batch(tmp_path: Path) -> None:
    """EISDIR while the batch reads a chunk is bad input: that chunk fails once, its batch-mates complete."""
    source = make_chunks(tmp_path / "source", 3, 1000)
    [batch] = plan_job([str(source)], 10, 10**9).batches
    (source / "part-00001.txt").unlink()
    (source / "part-00001.txt").mkdir()
    result = compress_batch(batch, prepare_job(str(tmp_path / "out"), "job", "cpu", 6))
    assert sorted(recipe.chunk_id for recipe in recipes_of(result)) == ["part-00000.txt", "part-00002.txt"]
    [failure] = result.failures
    assert failure.item_id == "part-00001.txt" and "IsADirectoryError" in failure.reason
    assert "not retried" in failure.reason


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/mem, which Linux alone has")
@pytest.mark.usefixtures("prefect_api")
def test_a_chunk_whose_read_fails_while_planning_fails_alone(tmp_path: Path) -> None:
    """A listed file whose read raises EIO (a followed link to /proc/self/mem) is tried K times and quarantined."""
    source = make_chunks(tmp_path / "source", 3, 1000)
    (source / "unreadable.bin").symlink_to("/proc/self/mem")
    report = run_job(str(source), tmp_path / "out", follow_symlinks=True)
    assert report.compressed == 3 and [failure.item_id for failure in report.failed] == ["unreadable.bin"]
    assert "Input/output error" in report.failed[0].reason
    assert f"failed {ITEM_ATTEMPTS} times the same way" in report.failed[0].reason
    quarantine = (tmp_path / "out" / "job" / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(line)["item_id"] for line in quarantine] == ["unreadable.bin"]


@pytest.mark.parametrize("code", [errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.ENOENT])
def test_bad_input_os_errors_are_not_transient(code: int) -> None:
    """An OS error that says the name or place is wrong fails the same way again, so it is not retried."""
    assert not is_retryable(OSError(code, os.strerror(code)))


@pytest.mark.parametrize("error", [OSError(errno.EIO, "Input/output error"), TimeoutError("timed out"), ConnectionResetError()])
def test_passing_os_errors_are_transient(error: OSError) -> None:
    """I/O errors a later attempt may not meet are retried."""
    assert is_retryable(error)


def test_a_failed_batch_keeps_the_chunks_that_reached_the_destination(tmp_path: Path) -> None:
    """Salvage after a whole-batch failure: chunks at the destination stay done, only the others fail."""
    settings = prepare_job(str(tmp_path / "out"), "job", "cpu", 6)
    [batch] = plan_job([str(make_chunks(tmp_path / "source", 3, 1000))], 10, 10**9).batches
    compress_batch(batch, settings)
    (tmp_path / "out" / "job" / "chunks" / "part-00001.txt.gz").unlink()
    result = salvage_batch(JOB_KIND, batch, settings, "the codec crashed")
    assert sorted(recipe.chunk_id for recipe in recipes_of(result)) == ["part-00000.txt", "part-00002.txt"]
    assert result.found_at_destination == []
    assert [(failure.item_id, failure.reason) for failure in result.failures] == [
        ("part-00001.txt", "item 'part-00001.txt': its batch failed: the codec crashed")
    ]
