"""The `colab-gpu` pool's job command: stop a run that keeps crashing, before its flow is loaded.

A run can crash before its flow body runs (a failed pull step, an import error, a worker that
died while the run was Pending), so the attempt count cannot live in the flow. The worker starts
`python3 -m deployments.attempt_guard` for each run instead of `prefect flow-run execute`. The
guard counts the run's crashes in its state history (`tasks.engine.attempts.count_crashes`). At
`COLABFLOW_MAX_ATTEMPTS` it sets the final Crashed state "Abandoned" and exits 0, so the worker
reports nothing more and the reschedule automation, which listens only for "Crashed", lets it
be. Otherwise it replaces itself (exec, same process id) with `prefect flow-run execute`, so the
worker's SIGTERM reaches that process and `PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule`
keeps working.
"""

from __future__ import annotations

import os
import sys
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.states import Crashed

from tasks.engine.attempts import (
    ABANDONED_STATE_NAME,
    count_crashes,
    exhausted_message,
    parse_max_attempts,
)
from tasks.errors import ColabflowError, InvalidParameterError

EXECUTE = (sys.executable, "-m", "prefect", "flow-run", "execute")


def abandon_if_exhausted(client: SyncPrefectClient, flow_run_id: UUID, max_attempts: int) -> str | None:
    """Set the run "Abandoned" when it has crashed `max_attempts` times; return why, else None."""
    states = sorted(client.read_flow_run_states(flow_run_id), key=lambda state: state.timestamp)
    message = exhausted_message(count_crashes([(state.type.value, state.name or "") for state in states]), max_attempts)
    if message is not None:
        client.set_flow_run_state(flow_run_id, Crashed(name=ABANDONED_STATE_NAME, message=message))
    return message


def flow_run_id_from(environment: dict[str, str]) -> UUID:
    """The run the worker started this process for."""
    value = environment.get("PREFECT__FLOW_RUN_ID", "")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidParameterError(
            f"PREFECT__FLOW_RUN_ID must be a flow run id, got {value!r}; the guard is the work pool's job "
            "command and runs only when a Prefect worker starts a flow run"
        ) from None


def main() -> int:
    """Abandon the run, or become `prefect flow-run execute` for it."""
    environment = dict(os.environ)
    try:
        flow_run_id = flow_run_id_from(environment)
        max_attempts = parse_max_attempts(environment.get("COLABFLOW_MAX_ATTEMPTS"))
    except ColabflowError as error:
        print(f"colabflow attempt guard: {error}", file=sys.stderr)
        return 2
    with get_client(sync_client=True) as client:
        message = abandon_if_exhausted(client, flow_run_id, max_attempts)
    if message is not None:
        print(f"colabflow attempt guard: flow run {flow_run_id} {message}", flush=True)
        return 0
    sys.stdout.flush()
    os.execv(EXECUTE[0], EXECUTE)


if __name__ == "__main__":
    sys.exit(main())
