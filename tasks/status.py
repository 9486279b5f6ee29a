"""`colabflow status`: a job's progress from its folder, and its run's state from the API."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from pydantic import BaseModel, ValidationError

from tasks.destinations import RECIPE_SUFFIX
from tasks.errors import CorruptOutputError
from tasks.job_record import JOB_RECORD_NAME, QUARANTINE_NAME, JobRecord

_FINISHED_TASK_STATES = {"COMPLETED"}


class RunStatus(BaseModel):
    """What the Prefect API says about a flow run."""

    flow_run_id: str
    state: str
    attempts: int
    batches_started: int
    batches_redone: int
    worker_host: str | None


class JobStatus(BaseModel):
    """What a job folder, and the API when reachable, say about a job."""

    job_dir: str | None
    chunks_done: int | None
    chunks_total: int | None
    quarantined: int | None
    run: RunStatus | None


def read_job_folder(job_dir: Path) -> tuple[JobRecord, int, int]:
    """The job record, the chunks done (recipes present) and the chunks quarantined."""
    try:
        record = JobRecord.model_validate_json((job_dir / JOB_RECORD_NAME).read_bytes())
    except FileNotFoundError:
        raise CorruptOutputError(
            f"{str(job_dir / JOB_RECORD_NAME)!r} does not exist; give a job folder (<destination>/<job>) "
            "or a flow run id"
        ) from None
    except ValidationError as error:
        raise CorruptOutputError(f"{str(job_dir / JOB_RECORD_NAME)!r} is not a job record: {error}") from None
    done = sum(1 for _ in (job_dir / "chunks").rglob("*" + RECIPE_SUFFIX))
    quarantine = job_dir / QUARANTINE_NAME
    quarantined = len(quarantine.read_bytes().splitlines()) if quarantine.is_file() else 0
    return record, done, quarantined


def read_run(client: SyncPrefectClient, flow_run_id: UUID) -> RunStatus:
    """State, attempts, batch task runs and worker host of a flow run."""
    run = client.read_flow_run(flow_run_id)
    batches = [
        task_run for task_run in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        if task_run.task_key.startswith("compress_batch") or task_run.name.startswith("compress-batch")
    ]
    redone = sum(1 for task_run in batches if task_run.state_type is None or task_run.state_type.value not in _FINISHED_TASK_STATES)
    pid = run.infrastructure_pid or ""
    return RunStatus(
        flow_run_id=str(flow_run_id),
        state=(run.state.name or run.state.type.value) if run.state else "unknown",
        attempts=run.run_count,
        batches_started=len(batches),
        batches_redone=redone,
        worker_host=pid.split(":")[0] if ":" in pid else None,
    )


def job_status(target: str, client: SyncPrefectClient | None) -> JobStatus:
    """Status of a job folder or a flow run id; the API part is skipped when `client` is None."""
    try:
        flow_run_id: UUID | None = UUID(target)
    except ValueError:
        flow_run_id = None
    if flow_run_id is not None:
        return JobStatus(job_dir=None, chunks_done=None, chunks_total=None, quarantined=None,
                         run=read_run(client, flow_run_id) if client else None)
    record, done, quarantined = read_job_folder(Path(target))
    run = None
    if client is not None and record.flow_run_id:
        run = read_run(client, UUID(record.flow_run_id))
    return JobStatus(job_dir=target, chunks_done=done, chunks_total=record.chunks_total, quarantined=quarantined, run=run)
