"""`colabflow setup`: the `colab-gpu` work pool, its queues and the recovery automations.

Idempotent: it reads what exists and creates or updates only what differs, so a second run
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import (
    Automation,
    AutomationCore,
    EventTrigger,
    Posture,
)
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from deployments.drain_events import DRAINED_EVENT

QUEUES = ("a100", "l4", "t4", "any", "cpu")
FINAL_EVENTS = {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled"}
# Each run starts through the guard, which counts its crashes before the flow is loaded.
JOB_COMMAND = "python3 -m deployments.attempt_guard"


@dataclass(frozen=True)
class PoolSettings:
    """What `colabflow setup` creates."""

    pool: str = "colab-gpu"
    max_attempts: int = 10
    heartbeat_seconds: int = 30
    zombie_after_seconds: int = 90
    reschedule_after_seconds: int = 30


def base_job_template(settings: PoolSettings) -> dict[str, Any]:
    """Prefect's process template with our command and environment fixed, not job variables.

    A job variable that could set the command or the environment would let anyone who may trigger
    a run execute any command on the worker, or widen the code allowlist
    (`COLABFLOW_ALLOWED_CODE`), which must come only from where the worker starts. So both are
    written into the job configuration, dropped from the variables, and the server refuses any
    job variable the schema does not name (HTTP 422 when the run is created).
    """
    template = ProcessWorker.get_default_base_job_template()
    variables = template["variables"]
    for fixed in ("command", "env"):
        del variables["properties"][fixed]
    variables["additionalProperties"] = False
    template["job_configuration"]["command"] = JOB_COMMAND
    template["job_configuration"]["env"] = {
        "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR": "reschedule",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(settings.heartbeat_seconds),
        "COLABFLOW_MAX_ATTEMPTS": str(settings.max_attempts),
        # Storage waits and retries (colabflow.gcs, .drive, .github) reach the run's log in the UI.
        "PREFECT_LOGGING_EXTRA_LOGGERS": "colabflow",
    }
    return template


START_EVENTS = frozenset({"prefect.flow-run.Pending", "prefect.flow-run.Submitting", "prefect.flow-run.Running"})


def recovery_automations(settings: PoolSettings) -> list[AutomationCore]:
    """Mark silent runs Crashed; put Crashed runs of the pool back in the queue after a wait."""
    in_pool = ResourceSpecification({"prefect.resource.role": "work-pool", "prefect.resource.name": settings.pool})
    runs = ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
    crash_silent = AutomationCore(
        name=f"colabflow {settings.pool}: crash runs without heartbeat",
        description="A run whose worker stopped sending heartbeats died with its machine.",
        trigger=EventTrigger(
            # The start states too: a run killed before its first heartbeat reached the server has
            # only those (docs/benchmarks.md, chaos). So --crash-after must exceed the slowest start.
            # Any later event of the run (heartbeat or state change) answers, as in Prefect's "detect
            # zombie flows" recipe: a drained run (AwaitingRetry, a Scheduled state) waiting
            # for a worker is not dead, and neither is an Abandoned one. A heartbeat sent after the
            # drain's AwaitingRetry starts the countdown again; the worker's DRAINED_EVENT, sent once
            # the run's process is gone, answers it (deployments/drain_events.py).
            after={"prefect.flow-run.heartbeat", *START_EVENTS},
            expect={"prefect.flow-run.*", DRAINED_EVENT},
            match=runs, match_related=in_pool, for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=settings.zombie_after_seconds),
        ),
        actions=[ChangeFlowRunState(
            name=None, force=False, state=StateType.CRASHED,
            message=f"No heartbeat for {settings.zombie_after_seconds} s: the worker or its machine died.",
        )],
    )
    reschedule = AutomationCore(
        name=f"colabflow {settings.pool}: reschedule crashed runs",
        description=f"Put a Crashed run back in its queue; its job command gives up after {settings.max_attempts} crashes.",
        trigger=EventTrigger(
            after={"prefect.flow-run.Crashed"},
            expect={"prefect.flow-run.Scheduled", "prefect.flow-run.Pending", "prefect.flow-run.Running", *FINAL_EVENTS},
            match=runs, match_related=in_pool, for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=settings.reschedule_after_seconds),
        ),
        actions=[ChangeFlowRunState(
            name=None, force=False, state=StateType.SCHEDULED, message="Rescheduled after a crash; finished batches are reused.",
        )],
    )
    return [crash_silent, reschedule]


def ensure_pool(client: SyncPrefectClient, settings: PoolSettings) -> list[str]:
    """Create or update the pool and its queues; return what changed."""
    changes: list[str] = []
    template = base_job_template(settings)
    try:
        existing = client.read_work_pool(settings.pool)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=settings.pool, type="process", base_job_template=template))
        changes.append(f"created work pool {settings.pool!r}")
    else:
        if existing.base_job_template != template:
            client.update_work_pool(settings.pool, WorkPoolUpdate(base_job_template=template))
            changes.append(f"updated the job template of {settings.pool!r}")
    present = {queue.name for queue in client.read_work_queues(work_pool_name=settings.pool)}
    for priority, queue in enumerate(QUEUES, start=1):
        if queue not in present:
            client.create_work_queue(name=queue, work_pool_name=settings.pool, priority=priority)
            changes.append(f"created queue {queue!r}")
    return changes


def ensure_automations(client: SyncPrefectClient, settings: PoolSettings) -> list[str]:
    """Create each automation, or replace it when its definition changed."""
    changes: list[str] = []
    for wanted in recovery_automations(settings):
        found = client.read_automations_by_name(wanted.name)
        if len(found) == 1 and _same_automation(found[0], wanted):
            continue
        for stale in found:
            client.delete_automation(stale.id)
        client.create_automation(wanted)
        changes.append(f"{'replaced' if found else 'created'} automation {wanted.name!r}")
    return changes


def _same_automation(existing: Automation, wanted: AutomationCore) -> bool:
    # Python-mode dumps keep the trigger's event sets as sets: a JSON dump turns them into lists
    # in hash order, which differs between processes.
    keys = {"name", "description", "enabled", "trigger", "actions"}
    return bool(existing.model_dump(include=keys) == wanted.model_dump(include=keys))


def setup_pool(client: SyncPrefectClient, settings: PoolSettings) -> list[str]:
    """Everything `colabflow setup` does; an empty list means nothing needed changing."""
    return ensure_pool(client, settings) + ensure_automations(client, settings)
