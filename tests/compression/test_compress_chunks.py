"""End-to-end runs of the flow through a real Prefect server."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flows.compress_chunks import compress_chunks
from tasks.compression.models import JobReport
from tasks.compression.parameters import CompressJob
from tasks.engine.parameters import WebhookCallback
from tasks.errors import CodecUnavailableError
from tests.servers import wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")


def run(source: Path, destination: Path, **fields: object) -> JobReport:
    return compress_chunks(CompressJob(source=[str(source)], destination=str(destination), job="job", **fields))  # type: ignore[arg-type]


def test_a_job_compresses_everything_and_system_gzip_restores_it(sample_source: Path, tmp_path: Path) -> None:
    """Every chunk becomes a .gz that `gzip -t` accepts and `gzip -dc` restores to the same sha256."""
    report = run(sample_source, tmp_path / "out", batch_size=3)
    assert (report.chunks_total, report.compressed, report.reused, report.failed) == (8, 8, 0, [])
    assert report.batches_total == 3
    chunks = tmp_path / "out" / "job" / "chunks"
    for original in sample_source.rglob("*"):
        if original.is_file():
            member = chunks / (original.relative_to(sample_source).as_posix() + ".gz")
            subprocess.run(["gzip", "-t", str(member)], check=True)
            restored = subprocess.run(["gzip", "-dc", str(member)], capture_output=True, check=True).stdout
            assert hashlib.sha256(restored).digest() == hashlib.sha256(original.read_bytes()).digest()
    manifest = (tmp_path / "out" / "job" / "manifest.jsonl").read_bytes()
    assert len(manifest.splitlines()) == 8
    assert hashlib.sha256(manifest).hexdigest() == report.manifest_sha256


def test_a_rerun_reuses_every_batch_and_compresses_nothing(sample_source: Path, tmp_path: Path) -> None:
    """The second run of the same job loads every batch checkpoint; the manifest is unchanged."""
    first = run(sample_source, tmp_path / "out", batch_size=3)
    second = run(sample_source, tmp_path / "out", batch_size=3)
    assert (second.compressed, second.reused, second.batches_reused) == (0, 8, 3)
    assert second.manifest_sha256 == first.manifest_sha256
    assert len((tmp_path / "out" / "job" / "manifest.jsonl").read_bytes().splitlines()) == 8


def test_a_changed_chunk_is_the_only_one_redone(sample_source: Path, tmp_path: Path) -> None:
    """Editing one file invalidates its batch; the batch's other chunks come from the destination."""
    run(sample_source, tmp_path / "out", batch_size=3)
    (sample_source / "empty.txt").write_bytes(b"now it has content")
    report = run(sample_source, tmp_path / "out", batch_size=3)
    assert (report.compressed, report.reused, report.batches_reused) == (1, 7, 2)


def test_a_bad_chunk_fails_alone_and_the_rest_complete(sample_source: Path, tmp_path: Path) -> None:
    """A file whose name has a control character is reported; every other chunk is done."""
    (sample_source / "bad\x1bname.txt").write_bytes(b"x")
    report = run(sample_source, tmp_path / "out")
    assert report.compressed == 8
    assert [failure.item_id for failure in report.failed] == ["bad\x1bname.txt"]
    assert "control character" in report.failed[0].reason


def test_a_deleted_output_is_reported_then_rebuilt_on_refresh(sample_source: Path, tmp_path: Path) -> None:
    """A checkpoint whose .gz was deleted is flagged; --refresh-checkpoints redoes only that chunk."""
    run(sample_source, tmp_path / "out")
    (tmp_path / "out" / "job" / "chunks" / "random.bin.gz").unlink()
    flagged = run(sample_source, tmp_path / "out")
    assert [failure.item_id for failure in flagged.failed] == ["random.bin"]
    assert "rerun with --refresh-checkpoints" in flagged.failed[0].reason
    refreshed = run(sample_source, tmp_path / "out", refresh_checkpoints=True)
    assert (refreshed.compressed, refreshed.reused, refreshed.failed) == (1, 7, [])


def test_codec_gpu_without_a_gpu_fails_before_any_work(sample_source: Path, tmp_path: Path) -> None:
    """The flow stops at its first task and writes nothing."""
    with pytest.raises(CodecUnavailableError, match="codec 'gpu' cannot run"):
        run(sample_source, tmp_path / "out", codec="gpu")
    assert not (tmp_path / "out").exists()


def test_the_webhook_is_sent_once_per_job_and_signed(sample_source: Path, tmp_path: Path, httpserver: HTTPServer) -> None:
    """Two runs of the same job send one signed POST; the key comes from a Secret block."""
    from prefect.blocks.system import Secret

    Secret(value="hook-key").save("colabflow-test-hook", overwrite=True)
    httpserver.expect_request("/done", method="POST").respond_with_data("ok")
    callback = WebhookCallback(url=httpserver.url_for("/done"), secret_block="colabflow-test-hook")
    first = run(sample_source, tmp_path / "out", callback=callback)
    run(sample_source, tmp_path / "out", callback=callback)
    assert len(httpserver.log) == 1
    request, _ = httpserver.log[0]
    signature = "sha256=" + hmac.new(b"hook-key", request.get_data(), hashlib.sha256).hexdigest()
    assert request.headers["X-Colabflow-Signature"] == signature
    assert JobReport.model_validate_json(request.get_data()).manifest_sha256 == first.manifest_sha256


def test_the_run_publishes_progress_and_report_artifacts_without_secrets(
    sample_source: Path, tmp_path: Path, httpserver: HTTPServer
) -> None:
    """A finished run has a 100 % progress artifact and a report table; its logs never hold the secret."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    Secret(value="never-log-me").save("colabflow-test-quiet", overwrite=True)
    httpserver.expect_request("/done").respond_with_data("ok")
    request = CompressJob(
        source=[str(sample_source)], destination=str(tmp_path / "out"), job="artifacts",
        callback=WebhookCallback(url=httpserver.url_for("/done"), secret_block="colabflow-test-quiet"),
    )
    state = compress_chunks(request, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["colabflow-artifacts", "colabflow-artifacts-report"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )

        def callback_logged() -> list[str]:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            messages = [log.message for log in logs]
            return messages if any("callback to" in message for message in messages) else []

        messages = wait_until(callback_logged, 30, what="the callback's log line at the API")
    by_type = {artifact.type: artifact for artifact in artifacts}
    assert by_type["progress"].data == 100.0
    rows = json.loads(by_type["table"].data)  # type: ignore[arg-type]
    assert {"field": "compressed", "value": 8} in rows
    assert not any("never-log-me" in message for message in messages)
