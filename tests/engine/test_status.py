"""`colabflow status`: the units run again, the batches redone, and a flow run id leading to its job folder."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TaskRun

from flows.compress_chunks import compress_chunks
from tasks.compression.models import JobReport
from tasks.compression.parameters import CompressJob
from tasks.engine.status import count_rerun_units, job_status
from tasks.errors import InvalidParameterError


def unit_run(name: str, attempt: int, state: str) -> TaskRun:
    return TaskRun(name=name, task_key="batches", dynamic_key="0", flow_run_run_count=attempt, state_name=state)


def test_a_unit_run_again_in_a_later_attempt_counts_as_rerun() -> None:
    """Unit a was executed in attempts 1 and 2, b only loaded from its record: one rerun."""
    runs = [
        unit_run("batch-a", 1, "Running"), unit_run("batch-a", 2, "Completed"),
        unit_run("batch-b", 1, "Completed"), unit_run("batch-b", 2, "Cached"),
        unit_run("batch-c", 2, "Completed"),
    ]
    assert count_rerun_units(runs) == 1


def test_two_units_rerun_in_two_later_attempts_count_two() -> None:
    """Each unit that a later attempt executed counts once, however many attempts ran it."""
    runs = [
        unit_run("batch-a", 1, "Running"), unit_run("batch-a", 2, "Running"), unit_run("batch-a", 3, "Completed"),
        unit_run("batch-b", 2, "Running"), unit_run("batch-b", 3, "Completed"),
    ]
    assert count_rerun_units(runs) == 2


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_run_id_shows_the_chunks_and_the_host_of_its_job(sample_source: Path, tmp_path: Path) -> None:
    """Given only the run id, status reads the run's parameters, finds the job folder and reports it."""
    out = tmp_path / "out"
    report = compress_chunks(CompressJob(source=[str(sample_source)], destination=str(out), job="job", batch_size=3))
    assert isinstance(report, JobReport)
    flow_run_id = json.loads((out / "job" / "job.json").read_text())["flow_run_id"]
    with get_client(sync_client=True) as client:
        status = job_status(flow_run_id, client)
    assert status.job_dir == f"{out}/job"
    assert (status.items_done, status.items_total, status.quarantined) == (8, 8, 0)
    assert status.host and status.run is not None and status.run.worker_host == status.host
    assert (status.run.flow_run_id, status.run.state, status.run.task_runs_started) == (flow_run_id, "Completed", 3)


def test_a_flow_run_id_needs_the_api() -> None:
    """`--offline` with a run id says to give the job folder instead."""
    with pytest.raises(InvalidParameterError, match="is a flow run id; drop --offline, or give the job folder"):
        job_status(str(UUID(int=1)), None)
