"""`colabflow status`: a job's progress from its folder, and its run's state from the API."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, TaskRun
from pydantic import BaseModel, Field, JsonValue, ValidationError

from blocks.compute_budget import ComputeBudget
from tasks.engine.checkpoints import TASK_RUN_PREFIX, count_committed_items
from tasks.engine.job_folder import (
    normalize_location,
    open_job_folder,
    open_job_location,
)
from tasks.engine.job_record import (
    JOB_RECORD_NAME,
    QUARANTINE_NAME,
    JobRecord,
    read_job_record,
)
from tasks.engine.kinds import BatchKind, ReportsProgress, job_kind
from tasks.engine.ledger import read_ledger, spend
from tasks.engine.telemetry import count_batches_redone
from tasks.errors import CorruptOutputError, InvalidParameterError
from tasks.storage.stores import StorageAccess

TASK_RUN_PAGE = 200


class JobLocation(BaseModel):
    """The part of every flow's parameter model that says where its job folder is."""

    destination: str
    job: str
    access: StorageAccess = Field(default_factory=StorageAccess)


class RunStatus(BaseModel):
    """What the Prefect API says about a flow run."""

    flow_run_id: str
    state: str
    attempts: int
    task_runs_started: int = Field(description="Task units started, each carrying consecutive batches.")
    task_runs_rerun: int = Field(
        description="Task units that a later attempt ran again (not loaded from their record); their "
        "committed batches load from done markers, so `batches_redone` counts the work lost."
    )
    worker_host: str | None


class JobStatus(BaseModel):
    """What a job folder, and the API when reachable, say about a job."""

    job_dir: str | None
    kind: str | None = Field(default=None, description="The job kind that writes the folder.")
    host: str | None = Field(description="Host of the run's latest attempt, from the job folder.")
    attempt: int | None = Field(description="Attempt number recorded by the latest run in the job folder.")
    items_done: int | None = Field(description="Items in the job's committed batches.")
    items_total: int | None
    quarantined: int | None
    batches_redone: int | None = Field(
        default=None, description="Batches computed by more than one process (attempt), from the job's telemetry."
    )
    compute_units_spent: float | None = Field(
        default=None, description="Units every job at the job's destination spent, from its ledger.jsonl."
    )
    quota_units: float | None = Field(default=None, description="The given ComputeBudget's quota; None without one.")
    progress: dict[str, JsonValue] | None = Field(
        default=None, description="A kind's own progress figures (iterative jobs: iteration, last checkpoint and its age)."
    )
    run: RunStatus | None


def read_job_folder(job_location: str, access: StorageAccess) -> tuple[JobRecord, int | None, int]:
    """The job record, the items done (in committed batches; None for a kind without batches) and the items quarantined."""
    folder = open_job_location(job_location, access)
    record = read_job_record(folder)
    if record is None:
        raise CorruptOutputError(
            f"{job_location!r} holds no {JOB_RECORD_NAME}; give a job folder (<destination>/<job>) or a flow run id"
        )
    results = open_job_folder(record.results, folder.job, access) if record.results else folder
    quarantine = folder.read(QUARANTINE_NAME) or b""
    done = count_committed_items(results) if isinstance(job_kind(record.kind), BatchKind) else None
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
    batch runs shown as Running, so these figures can trail the job folder's. Without a host from
    the job folder, the worker's host comes from the run's process id (`HOST:PID` on process pools).
    """
    run = client.read_flow_run(flow_run_id)
    batches = [task_run for task_run in read_task_runs(client, run.id) if task_run.name.startswith(TASK_RUN_PREFIX)]
    if worker_host is None and run.infrastructure_pid:
        worker_host = run.infrastructure_pid.rpartition(":")[0] or None
    return RunStatus(
        flow_run_id=str(run.id),
        state=(run.state.name or run.state.type.value) if run.state else "unknown",
        attempts=run.run_count,
        task_runs_started=len({task_run.name for task_run in batches}),
        task_runs_rerun=count_rerun_units(batches),
        worker_host=worker_host,
    )


def job_location_of(run: FlowRun) -> tuple[str, StorageAccess] | None:
    """The job folder (`<destination>/<job>`) and storage access a run of any kind's flow was given.

    Every flow takes one `request` model with a `destination`, a `job` and an `access`.
    """
    request = run.parameters.get("request")
    if not isinstance(request, dict):
        return None
    try:
        located = JobLocation.model_validate(request)
    except ValidationError:
        return None
    return f"{normalize_location(located.destination)}/{located.job}", located.access


def count_rerun_units(unit_runs: list[TaskRun]) -> int:
    """Task units executed again in a later attempt than the one that first started them.

    Unit task runs are named after their checkpoint key, so the runs of one unit in different
    attempts share a name. A unit loaded from its record shows as Cached and is not rerun. A killed
    process may never report a finished unit's final state, so a unit counts as rerun only when a
    later attempt really ran it (state Completed, not Cached).
    """
    by_key: dict[str, list[TaskRun]] = defaultdict(list)
    for task_run in unit_runs:
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

    A flow run id leads to its job folder through the run's parameters; a job folder leads to its
    latest run through the folder's job record. A job folder's status carries the destination's
    spend, against `budget`'s quota when given.
    """
    quota = budget.quota_units if budget is not None else None
    run = read_flow_run(client, target)
    if run is not None and client is not None:
        found = job_location_of(run)
        if found is None or not job_folder_exists(*found):
            return JobStatus(job_dir=found[0] if found else None, host=None, attempt=None, items_done=None,
                             items_total=None, quarantined=None, quota_units=quota, run=read_run(client, run.id))
        target, access = found
    record, done, quarantined = read_job_folder(target, access)
    run_id = run.id if run is not None else UUID(record.flow_run_id) if record.flow_run_id else None
    folder = open_job_location(target, access)
    spent = spend(read_ledger(folder.destination, access))
    redone = count_batches_redone(folder.destination, access, folder.job)
    kind = job_kind(record.kind)
    progress = kind.job_progress(folder, access) if isinstance(kind, ReportsProgress) else None
    return JobStatus(job_dir=target, kind=record.kind, progress=progress, host=record.host, attempt=record.attempt, items_done=done,
                     items_total=record.items_total, quarantined=quarantined, batches_redone=redone,
                     compute_units_spent=spent,
                     quota_units=quota, run=read_run(client, run_id, record.host) if client and run_id else None)


def read_flow_run(client: SyncPrefectClient | None, target: str) -> FlowRun | None:
    """The flow run when `target` is a flow run id and the API is reachable, else None."""
    try:
        flow_run_id = UUID(target)
    except ValueError:
        return None
    if client is None:
        raise InvalidParameterError(f"{target!r} is a flow run id; drop --offline, or give the job folder instead")
    return client.read_flow_run(flow_run_id)


def job_folder_exists(job_location: str, access: StorageAccess) -> bool:
    """Whether the job folder already holds its job record (a run that has not started has none)."""
    return open_job_location(job_location, access).read(JOB_RECORD_NAME) is not None
