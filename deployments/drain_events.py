"""The last word on a drained run: an event the worker sends once the run's process is gone.

The no-heartbeat automation (deployments/setup.py) starts its countdown again at every
heartbeat. A drained run is rescheduled (AwaitingRetry) by its own process, whose heartbeat
thread lives on until the process ends, because AwaitingRetry is not a final state. A heartbeat
sent in that moment starts a countdown that nothing answers while the run waits in the queue,
and the automation marks the waiting run Crashed `--crash-after` later. Once the run's process
has exited no heartbeat can follow, so this event, which the automation expects but which
starts no countdown, answers the last one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from prefect.events import Event

DRAINED_EVENT = "colabflow.flow-run.drained"
logger = logging.getLogger("colabflow.worker")


def flow_run_id_of(process: psutil.Process) -> str | None:
    """The flow run a worker's child process executes (Prefect's process worker sets it in the environment)."""
    try:
        return process.environ().get("PREFECT__FLOW_RUN_ID") or None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def announce_drained(flow_run_ids: Iterable[str], pool: str) -> None:
    """Send DRAINED_EVENT for each run, related to the work pool as the automation's match requires.

    A failure is logged, not raised: without the event the run is at worst called dead and rescheduled.
    """
    ids = list(flow_run_ids)
    if not ids:
        return
    try:
        asyncio.run(_announce(ids, pool))
    except Exception as error:  # noqa: BLE001 - the drain itself has succeeded; this only spares a false crash
        logger.warning("could not send %s for %s: %s", DRAINED_EVENT, ", ".join(ids), error)


async def _announce(flow_run_ids: list[str], pool: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events import Event, RelatedResource, Resource

    async with get_client() as client:
        work_pool = await client.read_work_pool(pool)
    in_pool = RelatedResource.model_validate({"prefect.resource.id": f"prefect.work-pool.{work_pool.id}",
                                              "prefect.resource.role": "work-pool", "prefect.resource.name": pool})
    await send_events([Event(event=DRAINED_EVENT, related=[in_pool],
                             resource=Resource.model_validate({"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"}))
                       for flow_run_id in flow_run_ids])


async def send_events(events: list[Event]) -> None:
    """Send events over the Prefect API's events client; return once they are sent."""
    from prefect.events.clients import get_events_client

    async with get_events_client() as client:
        for event in events:
            await client.emit(event)
