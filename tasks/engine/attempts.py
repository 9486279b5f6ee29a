"""The attempt budget of a flow run that crash recovery reschedules.

The reschedule automation cannot count, so the pool's job command does
(`deployments/attempt_guard.py`): before Prefect loads the flow, it counts the run's crashes in
its state history. A run that has crashed `COLABFLOW_MAX_ATTEMPTS` times ends in a Crashed state
named "Abandoned", which the reschedule automation does not listen for, so recovery stops.

Only crashes count, wherever they happen: before Running (a failed pull step, an import error, a
worker that died while the run was Pending) as well as during it. A drain is not a crash: a
SIGTERM puts the run in AwaitingRetry (type Scheduled) without a Crashed state, so a job may
outlive any number of time budgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tasks.errors import InvalidParameterError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

ABANDONED_STATE_NAME = "Abandoned"
DEFAULT_MAX_ATTEMPTS = 10
CRASHED = "CRASHED"
SCHEDULED = "SCHEDULED"


def count_crashes(history: Sequence[tuple[str, str]]) -> int:
    """Crashes in a run's `(state type, state name)` history, oldest first.

    Consecutive Crashed states are one crash: the engine's supervisor and the worker (or the
    no-heartbeat automation) may both report the same death. A Crashed state straight after a
    Scheduled one (AwaitingRetry, Late) is no crash either: the run was waiting in the queue, and
    the no-heartbeat automation fired on it anyway (docs/recovery.md, "Known problem").
    Counting starts again after an "Abandoned" state, so a run retried by hand gets a fresh budget.
    """
    crashes = 0
    previous = ""
    for state_type, name in history:
        if state_type == CRASHED and name == ABANDONED_STATE_NAME:
            crashes = 0
        elif state_type == CRASHED and previous not in (CRASHED, SCHEDULED):
            crashes += 1
        previous = state_type
    return crashes


def exhausted_message(crashes: int, max_attempts: int) -> str | None:
    """Why a run must stop after `crashes` crashes, or None while it still has attempts."""
    if crashes < max_attempts:
        return None
    attempts = "1 attempt" if max_attempts == 1 else f"{max_attempts} attempts"
    return (
        f"gave up after {attempts}: the run crashed every time (see its earlier states and logs); "
        "finished batches are kept, so fix the cause and start the deployment again"
    )


def parse_max_attempts(value: str | None) -> int:
    """`COLABFLOW_MAX_ATTEMPTS` as a positive count; unset means the default."""
    if value is None or value == "":
        return DEFAULT_MAX_ATTEMPTS
    if not value.strip().isdigit() or int(value) < 1:
        raise InvalidParameterError(
            f"COLABFLOW_MAX_ATTEMPTS must be a whole number of attempts of at least 1, got {value!r}; "
            "fix the work pool's environment with `colabflow setup --max-attempts N`"
        )
    return int(value)


def abandoned_state() -> State[None] | None:
    """The flow body's older check, by run count; the job command's guard replaces it.

    It counts every start, drains included, and never sees a crash before Running. Remove it
    together with its call at the top of `flows/compress_chunks.py`.
    """
    import os

    from prefect.runtime import flow_run
    from prefect.states import Crashed

    max_attempts = parse_max_attempts(os.environ.get("COLABFLOW_MAX_ATTEMPTS"))
    message = exhausted_message(int(flow_run.run_count or 1) - 1, max_attempts)
    return None if message is None else Crashed(name=ABANDONED_STATE_NAME, message=message)
