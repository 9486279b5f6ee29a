"""The GitHub Actions workflow reads the job report of a Completed run: failed chunks fail the step.

The step runs as in tests/deployments/test_notebook.py (its helpers and fixture), and the run it starts is
executed by the real flow, in this process, so the report artifact is the one the flow publishes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from tests.deployments.test_notebook import run_workflow_step, watch_deployment  # noqa: F401  (the fixture, used by name)


def run_the_flow(source: Path, destination: Path) -> Callable[[UUID, Path], None]:
    """A `play` that executes the step's flow run with the real flow on `source`, instead of a worker."""

    def play(flow_run_id: UUID, step_output: Path) -> None:
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow

        from flows.compress_chunks import compress_chunks
        from tasks.compression.parameters import CompressJob

        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
        job = flow_run.parameters["request"]["job"]
        request = CompressJob(source=[str(source)], destination=str(destination), job=job)
        run_flow(compress_chunks, flow_run=flow_run, parameters={"request": request})

    return play


def test_workflow_fails_a_completed_run_with_failed_chunks(
    watch_deployment: tuple[str, str], sample_source: Path, tmp_path: Path
) -> None:
    """A run that completes with a quarantined chunk makes the step fail, naming the count and the chunk."""
    (sample_source / "bad\x1bname.txt").write_bytes(b"x")
    result = run_workflow_step(*watch_deployment, tmp_path, "with-failures", run_the_flow(sample_source, tmp_path / "out"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "completed with 1 failed chunks" in output
    assert "failed: bad?name.txt: item id" in result.stdout


def test_workflow_passes_a_completed_run_whose_chunks_all_succeeded(
    watch_deployment: tuple[str, str], sample_source: Path, tmp_path: Path
) -> None:
    """A run whose report lists no failed chunk makes the step succeed, and the report was read."""
    result = run_workflow_step(*watch_deployment, tmp_path, "all-done", run_the_flow(sample_source, tmp_path / "out"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Flow run finished successfully in 'Completed'." in output
    assert "has no job report" not in output
