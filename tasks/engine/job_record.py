"""Job records at the destination: `job.json` (what the run is doing) and `quarantine.jsonl`.

`colabflow status` reads them, so the state of a job is visible from its folder alone, even
when the Prefect API is out of reach.
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel

from tasks.compression.models import BatchSettings
from tasks.engine.job_folder import open_destination
from tasks.engine.models import ChunkFailure, JobPlan
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient

JOB_RECORD_NAME = "job.json"
QUARANTINE_NAME = "quarantine.jsonl"


class JobRecord(BaseModel):
    """What the latest run of a job planned, and where it runs."""

    job: str
    chunks_total: int
    batches_total: int
    flow_run_id: str | None
    attempt: int
    host: str
    updated_at: datetime


def write_job_record(settings: BatchSettings, plan: JobPlan, flow_run_id: str | None, attempt: int) -> JobRecord:
    """Write `<job>/job.json` for the run that is starting."""
    record = JobRecord(
        job=settings.job, chunks_total=plan.chunks_total, batches_total=len(plan.batches),
        flow_run_id=flow_run_id, attempt=attempt, host=socket.gethostname(),
        updated_at=datetime.now(timezone.utc),
    )
    open_destination(settings.destination, settings.access).put_job_file(
        settings.job, JOB_RECORD_NAME, record.model_dump_json(indent=2).encode() + b"\n"
    )
    return record


def write_quarantine(settings: BatchSettings, failures: list[ChunkFailure]) -> int:
    """Replace `<job>/quarantine.jsonl` with the chunks this run could not process, and why."""
    content = b"".join(failure.model_dump_json().encode() + b"\n" for failure in failures)
    open_destination(settings.destination, settings.access).put_job_file(settings.job, QUARANTINE_NAME, content)
    return len(failures)


@task(
    name="record-job", cache_policy=NO_CACHE, persist_result=False, retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def record_job_task(settings: BatchSettings, plan: JobPlan) -> JobRecord:
    """Record the run's plan, flow run id and attempt number at the destination."""
    run_id = flow_run.id
    return write_job_record(settings, plan, str(run_id) if run_id else None, int(flow_run.run_count or 1))


@task(
    name="quarantine-failures", cache_policy=NO_CACHE, persist_result=False, retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def quarantine_task(settings: BatchSettings, failures: list[ChunkFailure]) -> int:
    """Set aside the chunks that failed, with their reasons, so reruns and people can see them."""
    return write_quarantine(settings, failures)
