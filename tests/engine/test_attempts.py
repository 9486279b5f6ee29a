"""The attempt budget: counting a run's crashes, and the job command's guard against a real API."""

from __future__ import annotations

from uuid import UUID

import pytest

from deployments.attempt_guard import abandon_if_exhausted, flow_run_id_from
from tasks.engine.attempts import (
    ABANDONED_STATE_NAME,
    count_crashes,
    exhausted_message,
    parse_max_attempts,
)
from tasks.errors import InvalidParameterError

SCHEDULED, PENDING, RUNNING, CRASHED = "SCHEDULED", "PENDING", "RUNNING", "CRASHED"


def test_crashes_before_running_count_and_drains_do_not() -> None:
    """A crash while Pending counts; a drain (AwaitingRetry) does not; one death reported twice counts once."""
    history = [
        (SCHEDULED, "Scheduled"), (PENDING, "Pending"), (CRASHED, "Crashed"),
        (SCHEDULED, "Scheduled"), (PENDING, "Pending"), (RUNNING, "Running"), (SCHEDULED, "AwaitingRetry"),
        (PENDING, "Pending"), (RUNNING, "Running"), (CRASHED, "Crashed"), (CRASHED, "Crashed"),
    ]
    assert count_crashes(history) == 2


def test_a_crash_reported_while_the_run_waits_in_the_queue_does_not_count() -> None:
    """Crashed straight after a drain's AwaitingRetry (the automation saw the drain late) uses no attempt."""
    history = [(PENDING, "Pending"), (RUNNING, "Running"), (SCHEDULED, "AwaitingRetry"), (CRASHED, "Crashed"),
               (SCHEDULED, "Scheduled"), (PENDING, "Pending"), (RUNNING, "Running")]
    assert count_crashes(history) == 0


def test_counting_starts_again_after_an_abandoned_state() -> None:
    """A run retried by hand after it was abandoned gets a fresh budget."""
    history = [(CRASHED, "Crashed"), (SCHEDULED, "Scheduled"), (CRASHED, ABANDONED_STATE_NAME),
               (SCHEDULED, "Scheduled"), (PENDING, "Pending"), (CRASHED, "Crashed")]
    assert count_crashes(history) == 1


def test_a_run_with_as_many_crashes_as_attempts_is_abandoned_with_the_reason() -> None:
    """Crashes 0..N-1 leave attempts; the Nth crash ends the run with a message that says what to do."""
    assert exhausted_message(9, 10) is None
    message = exhausted_message(10, 10)
    assert message is not None and "gave up after 10 attempts" in message and "finished batches are kept" in message


def test_a_bad_max_attempts_names_the_variable_and_the_fix() -> None:
    """COLABFLOW_MAX_ATTEMPTS must be a positive whole number; unset means 10."""
    assert parse_max_attempts(None) == 10
    assert parse_max_attempts("3") == 3
    with pytest.raises(InvalidParameterError, match=r"COLABFLOW_MAX_ATTEMPTS .* got '0'.*colabflow setup --max-attempts"):
        parse_max_attempts("0")


def test_the_guard_refuses_to_run_without_a_flow_run_id() -> None:
    """Started by hand, outside a worker, the guard says what it needs."""
    with pytest.raises(InvalidParameterError, match=r"PREFECT__FLOW_RUN_ID must be a flow run id, got ''"):
        flow_run_id_from({})


def crashed_run(crashes: int) -> UUID:
    """A flow run on the test server that crashed `crashes` times and is now Pending again."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State, StateType

    @flow(name="attempt-guard-test")
    def nothing() -> None:
        """Never runs: only its runs' state histories matter."""

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(nothing)
        for _ in range(crashes):
            for state_type in (StateType.PENDING, StateType.RUNNING, StateType.CRASHED, StateType.SCHEDULED):
                client.set_flow_run_state(flow_run.id, State(type=state_type), force=True)
        client.set_flow_run_state(flow_run.id, State(type=StateType.PENDING), force=True)
    return flow_run.id


def test_the_guard_abandons_a_run_at_its_last_attempt(prefect_api: str) -> None:
    """Two crashes with two attempts: the run ends Crashed/Abandoned with the reason, as the API shows it."""
    from prefect.client.orchestration import get_client

    flow_run_id = crashed_run(2)
    with get_client(sync_client=True) as client:
        message = abandon_if_exhausted(client, flow_run_id, 2)
        state = client.read_flow_run(flow_run_id).state
    assert message is not None and "gave up after 2 attempts" in message
    assert state is not None and state.type.value == "CRASHED" and state.name == ABANDONED_STATE_NAME
    assert state.message == message


def test_the_guard_lets_a_run_with_attempts_left_go_on(prefect_api: str) -> None:
    """Two crashes with three attempts: the guard changes nothing, so the run starts."""
    from prefect.client.orchestration import get_client

    flow_run_id = crashed_run(2)
    with get_client(sync_client=True) as client:
        assert abandon_if_exhausted(client, flow_run_id, 3) is None
        state = client.read_flow_run(flow_run_id).state
    assert state is not None and state.type.value == "PENDING"
