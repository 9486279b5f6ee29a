"""What `colabflow setup` creates: the pool's job template, its queues and the recovery automations."""

from __future__ import annotations

from deployments.drain_events import DRAINED_EVENT
from deployments.setup import (
    QUEUES,
    PoolSettings,
    base_job_template,
    recovery_automations,
)


def test_the_job_template_starts_runs_through_the_attempt_guard_with_reschedule_on_sigterm() -> None:
    """Flow runs start through the attempt guard, reschedule on SIGTERM and send heartbeats."""
    template = base_job_template(PoolSettings(max_attempts=7, heartbeat_seconds=45))
    assert template["job_configuration"]["command"] == "python3 -m deployments.attempt_guard"
    assert template["job_configuration"]["env"] == {
        "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR": "reschedule",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "45",
        "COLABFLOW_MAX_ATTEMPTS": "7",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "colabflow",
    }


def test_no_job_variable_can_set_the_command_or_the_environment() -> None:
    """Neither is a variable, and variables the schema does not name are refused by the server."""
    variables = base_job_template(PoolSettings())["variables"]
    assert "command" not in variables["properties"] and "env" not in variables["properties"]
    assert variables["additionalProperties"] is False


def test_the_automations_crash_silent_runs_then_reschedule_them_in_the_pool() -> None:
    """One automation marks heartbeat-less runs Crashed; the other reschedules Crashed runs of this pool."""
    crash, reschedule = recovery_automations(PoolSettings(pool="p", zombie_after_seconds=90, reschedule_after_seconds=30))
    assert crash.trigger.after == {  # type: ignore[union-attr]
        "prefect.flow-run.heartbeat", "prefect.flow-run.Pending", "prefect.flow-run.Submitting", "prefect.flow-run.Running",
    }
    assert crash.trigger.within.total_seconds() == 90  # type: ignore[union-attr]
    # Any later event of the run answers, so a drained run waiting in AwaitingRetry
    # (or an Abandoned one) is never called dead; so does the worker's event after a drain.
    assert crash.trigger.expect == {"prefect.flow-run.*", DRAINED_EVENT}  # type: ignore[union-attr]
    assert DRAINED_EVENT not in crash.trigger.after  # type: ignore[union-attr]
    assert crash.actions[0].state.value == "CRASHED"  # type: ignore[union-attr]
    assert reschedule.trigger.after == {"prefect.flow-run.Crashed"}  # type: ignore[union-attr]
    assert reschedule.trigger.within.total_seconds() == 30  # type: ignore[union-attr]
    assert reschedule.actions[0].state.value == "SCHEDULED"  # type: ignore[union-attr]
    assert reschedule.trigger.match_related.root == {"prefect.resource.role": "work-pool", "prefect.resource.name": "p"}  # type: ignore[union-attr]


def test_the_queues_are_the_gpu_classes_any_and_cpu() -> None:
    """The pool's queues are the ones workers choose between."""
    assert QUEUES == ("a100", "l4", "t4", "any", "cpu")
