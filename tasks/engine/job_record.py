"""Job records in the job folder: `job.json` (what the run is doing) and `quarantine.jsonl`.

`colabflow status` and `colabflow verify` read them, so the state of a job is visible from its
folder alone, even when the Prefect API is out of reach.
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import AliasChoices, BaseModel, Field, ValidationError

from tasks.engine.job_folder import JobFolder, job_folder
from tasks.engine.models import ItemFailure, JobPlan, JobSettings
from tasks.errors import CorruptOutputError
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient

JOB_RECORD_NAME = "job.json"
QUARANTINE_NAME = "quarantine.jsonl"
# Records written before the kind was recorded (checkpoint formats 1 and 2) are all compression jobs.
KIND_BEFORE_FORMAT_3 = "compression"


class JobRecord(BaseModel):
    """What the latest run of a job planned, and where it runs."""

    job: str
    kind: str = Field(default=KIND_BEFORE_FORMAT_3, description="The job kind that writes the folder.")
    items_total: int = Field(validation_alias=AliasChoices("items_total", "chunks_total"))
    results: str | None = Field(default=None, description="Where the job's checkpoints are, when not in its folder.")
    batches_total: int
    flow_run_id: str | None
    attempt: int
    host: str
    updated_at: datetime


def write_job_record(settings: JobSettings, plan: JobPlan, flow_run_id: str | None, attempt: int) -> JobRecord:
    """Write `<job>/job.json` for the run that is starting."""
    record = JobRecord(
        job=settings.job, kind=settings.kind, items_total=plan.items_total,
        results=settings.results if settings.results != settings.destination else None, batches_total=len(plan.batches),
        flow_run_id=flow_run_id, attempt=attempt, host=socket.gethostname(), updated_at=datetime.now(timezone.utc),
    )
    job_folder(settings).write(JOB_RECORD_NAME, record.model_dump_json(indent=2).encode() + b"\n")
    return record


def read_job_record(folder: JobFolder) -> JobRecord | None:
    """The folder's job record, or None before the first run wrote one."""
    content = folder.read(JOB_RECORD_NAME)
    if content is None:
        return None
    try:
        return JobRecord.model_validate_json(content)
    except ValidationError as error:
        raise CorruptOutputError(f"{JOB_RECORD_NAME} of {folder.location!r} is not a job record: {error}") from None


def read_job_kind(folder: JobFolder) -> str:
    """The kind that wrote the folder; a folder without a record predates the record of kinds."""
    record = read_job_record(folder)
    return KIND_BEFORE_FORMAT_3 if record is None else record.kind


def write_quarantine(settings: JobSettings, failures: list[ItemFailure]) -> int:
    """Replace `<job>/quarantine.jsonl` with the items this run could not process, and why."""
    content = b"".join(failure.model_dump_json().encode() + b"\n" for failure in failures)
    job_folder(settings).write(QUARANTINE_NAME, content)
    return len(failures)


@task(
    name="record-job", cache_policy=NO_CACHE, persist_result=False, retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def record_job_task(settings: JobSettings, plan: JobPlan) -> JobRecord:
    """Record the run's plan, flow run id and attempt number in the job folder."""
    run_id = flow_run.id
    return write_job_record(settings, plan, str(run_id) if run_id else None, int(flow_run.run_count or 1))


@task(
    name="quarantine-failures", cache_policy=NO_CACHE, persist_result=False, retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def quarantine_task(settings: JobSettings, failures: list[ItemFailure]) -> int:
    """Set aside the items that failed, with their reasons, so reruns and people can see them."""
    return write_quarantine(settings, failures)
