"""`colabflow status`: a job's progress from its folder, and its run's state from the API."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from pydantic import BaseModel, Field, ValidationError

from blocks.compute_budget import ComputeBudget
from tasks.checkpoint import BATCH_RUN_PREFIX
from tasks.destinations import RECIPE_SUFFIX, open_destination, split_job_location
from tasks.errors import CorruptOutputError
from tasks.job_record import JOB_RECORD_NAME, QUARANTINE_NAME, JobRecord
from tasks.ledger import read_ledger, spend
from tasks.stores import StorageAccess

TASK_RUN_PAGE = 200

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
    compute_units_spent: float | None = Field(
        default=None, description="Units every job at the job's destination spent, from its ledger.jsonl."
    )
    quota_units: float | None = Field(default=None, description="The given ComputeBudget's quota; None without one.")
    run: RunStatus | None


def read_job_folder(job_location: str, access: StorageAccess) -> tuple[JobRecord, int, int]:
    """The job record, the chunks done (recipes present) and the chunks quarantined."""
    parent, job = split_job_location(job_location)
    destination = open_destination(parent, access)
    content = destination.read_job_file(job, JOB_RECORD_NAME)
    if content is None:
        raise CorruptOutputError(
            f"{job_location!r} holds no {JOB_RECORD_NAME}; give a job folder (<destination>/<job>) or a flow run id"
        )
    try:
        record = JobRecord.model_validate_json(content)
    except ValidationError as error:
        raise CorruptOutputError(f"{JOB_RECORD_NAME} of {job_location!r} is not a job record: {error}") from None
    chunks = destination.key(job, "chunks")
    done = sum(1 for info in destination.store.list(chunks) if info.key.endswith(RECIPE_SUFFIX))
    quarantine = destination.read_job_file(job, QUARANTINE_NAME) or b""
    return record, done, len(quarantine.splitlines())


def read_task_runs(client: SyncPrefectClient, flow_run_id: UUID) -> list[TaskRun]:
    """Every task run of a flow run, page by page (the API returns at most 200 at once)."""
    runs: list[TaskRun] = []
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=TASK_RUN_PAGE, offset=len(runs),
        )
        runs.extend(page)
        if len(page) < TASK_RUN_PAGE:
            return runs


def read_run(client: SyncPrefectClient, flow_run_id: UUID, worker_host: str | None = None) -> RunStatus:
    """State, attempts and batch task runs of a flow run.

    Task-run records reach the API after the runs themselves, and a killed attempt leaves its
    batch runs shown as Running, so these figures can trail the job folder's.
    """
    run = client.read_flow_run(flow_run_id)
    batches = [task_run for task_run in read_task_runs(client, flow_run_id) if task_run.name.startswith(BATCH_RUN_PREFIX)]
    return RunStatus(
        flow_run_id=str(flow_run_id),
        state=(run.state.name or run.state.type.value) if run.state else "unknown",
        attempts=run.run_count,
        batches_started=len({task_run.name for task_run in batches}),
        batches_redone=count_redone_batches(batches),
        worker_host=worker_host,
    )


def count_redone_batches(batch_runs: list[TaskRun]) -> int:
    """Batches executed again in a later attempt than the one that first started them.

    Batch task runs are named after their checkpoint key, so the runs of one batch in different
    attempts share a name. A batch loaded from its checkpoint shows as Cached and is not redone.
    A killed process may never report a finished batch's final state, so a batch counts as redone
    only when a later attempt really ran it (state Completed, not Cached).
    """
    by_key: dict[str, list[TaskRun]] = defaultdict(list)
    for task_run in batch_runs:
        by_key[task_run.name].append(task_run)
    redone = 0
    for runs in by_key.values():
        first_attempt = min(run.flow_run_run_count for run in runs)
        executed = [run.flow_run_run_count for run in runs if run.state_name == "Completed"]
        redone += any(attempt > first_attempt for attempt in executed)
    return redone


def job_status(
    target: str, client: SyncPrefectClient | None, access: StorageAccess = StorageAccess(),
    budget: ComputeBudget | None = None,
) -> JobStatus:
    """Status of a job folder or a flow run id; the API part is skipped when `client` is None.

    A job folder's status carries the destination's spend, against `budget`'s quota when given.
    """
    quota = budget.quota_units if budget is not None else None
    try:
        flow_run_id: UUID | None = UUID(target)
    except ValueError:
        flow_run_id = None
    if flow_run_id is not None:
        return JobStatus(job_dir=None, host=None, attempt=None, chunks_done=None, chunks_total=None,
                         quarantined=None, quota_units=quota, run=read_run(client, flow_run_id) if client else None)
    record, done, quarantined = read_job_folder(target, access)
    run = None
    if client is not None and record.flow_run_id:
        run = read_run(client, UUID(record.flow_run_id), record.host)
    spent = spend(read_ledger(split_job_location(target)[0], access))
    return JobStatus(job_dir=target, host=record.host, attempt=record.attempt, chunks_done=done,
                     chunks_total=record.chunks_total, quarantined=quarantined, compute_units_spent=spent,
                     quota_units=quota, run=run)
