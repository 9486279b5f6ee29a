"""The attempt budget of a flow run that crash recovery reschedules.

The reschedule automation cannot count, so the flow does: a run started more often than
`COLABFLOW_MAX_ATTEMPTS` ends at once as Crashed, with a state name ("Abandoned") that the
reschedule automation does not listen for, so recovery stops instead of looping forever.
"""

from __future__ import annotations

import os

from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Crashed

from deployments.setup import ABANDONED_STATE_NAME

DEFAULT_MAX_ATTEMPTS = 10


def exhausted_message(run_count: int, max_attempts: int) -> str | None:
    """Why a run must stop, or None while it still has attempts."""
    if run_count <= max_attempts:
        return None
    return (
        f"gave up after {max_attempts} attempts: the run crashed every time (see its earlier states); "
        "finished batches are kept, so fix the cause and start the deployment again"
    )


def abandoned_state() -> State[None] | None:
    """A final Crashed state if this run has used up its attempts, else None."""
    max_attempts = int(os.environ.get("COLABFLOW_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
    message = exhausted_message(int(flow_run.run_count or 1), max_attempts)
    return None if message is None else Crashed(name=ABANDONED_STATE_NAME, message=message)
