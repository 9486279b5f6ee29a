"""`colabflow status`: a job's progress from its folder, and its run's state from the API."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from pydantic import BaseModel, Field, ValidationError

from tasks.destinations import RECIPE_SUFFIX
from tasks.errors import CorruptOutputError
from tasks.job_record import JOB_RECORD_NAME, QUARANTINE_NAME, JobRecord

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
    host: str | None = Field(description="Host of the run's latest attempt, from the job folder.")
    attempt: int | None = Field(description="Attempt number recorded by the latest run in the job folder.")
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
    task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    batches = [task_run for task_run in task_runs if task_run.name.startswith("compress-batch")]
    pid = run.infrastructure_pid or ""
    return RunStatus(
        flow_run_id=str(flow_run_id),
        state=(run.state.name or run.state.type.value) if run.state else "unknown",
        attempts=run.run_count,
        batches_started=len(batches),
        batches_redone=count_redone_batches(batches),
        worker_host=pid.split(":")[0] if ":" in pid else None,
    )


def count_redone_batches(batch_runs: list[TaskRun]) -> int:
    """Batches executed again in a later attempt than the one that first started them.

    Keyed by checkpoint: a batch loaded from its checkpoint shows as Cached and is not redone.
    A killed process may never report a finished batch's final state, so a batch counts as redone
    only when a later attempt really ran it (state Completed, not Cached).
    """
    by_key: dict[str, list[TaskRun]] = defaultdict(list)
    for task_run in batch_runs:
        by_key[task_run.cache_key or str(task_run.id)].append(task_run)
    redone = 0
    for runs in by_key.values():
        first_attempt = min(run.flow_run_run_count for run in runs)
        executed = [run.flow_run_run_count for run in runs if run.state_name == "Completed"]
        redone += any(attempt > first_attempt for attempt in executed)
    return redone


def job_status(target: str, client: SyncPrefectClient | None) -> JobStatus:
    """Status of a job folder or a flow run id; the API part is skipped when `client` is None."""
    try:
        flow_run_id: UUID | None = UUID(target)
    except ValueError:
        flow_run_id = None
    if flow_run_id is not None:
        return JobStatus(job_dir=None, host=None, attempt=None, chunks_done=None, chunks_total=None,
                         quarantined=None, run=read_run(client, flow_run_id) if client else None)
    record, done, quarantined = read_job_folder(Path(target))
    run = None
    if client is not None and record.flow_run_id:
        run = read_run(client, UUID(record.flow_run_id))
    return JobStatus(job_dir=target, host=record.host, attempt=record.attempt, chunks_done=done,
                     chunks_total=record.chunks_total, quarantined=quarantined, run=run)
