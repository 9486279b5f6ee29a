"""`analyze-corpus/weekly`: deployed with its schedule, and a scheduled run done by a worker."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
from prefect.states import Scheduled

from tests.pool import deploy, flow_run_state, kill_machine, start_worker
from tests.servers import server_environment, wait_until

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "corpus"


def test_the_weekly_deployment_has_its_schedule_and_a_worker_runs_a_scheduled_run(prefect_api: str, tmp_path: Path) -> None:
    """Monday 03:00 Paris; the scheduler's next run, pointed at a corpus and moved to now, is run by a worker
    into corpus-<its date>."""
    shutil.copytree(SAMPLE, tmp_path / "corpus")
    env = server_environment(tmp_path / "client-home", prefect_api)
    env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    deploy(env, "--crash-after", "60s", "--reschedule-after", "10s")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("analyze-corpus/weekly")
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 3 * * 1", "Europe/Paris")  # type: ignore[union-attr]
        assert deployment.parameters["request"]["sources"] == ["/content/drive/MyDrive/corpus"]
        httpx.post(f"{prefect_api}/deployments/{deployment.id}/schedule", json={}).raise_for_status()
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                                     flow_run_filter=FlowRunFilter())
        upcoming = min((run for run in runs if run.state and run.state.is_scheduled()),
                       key=lambda run: run.expected_start_time or datetime.max.replace(tzinfo=timezone.utc))
        assert upcoming.expected_start_time is not None and upcoming.expected_start_time.weekday() == 0
        request = {**upcoming.parameters["request"], "sources": [str(tmp_path / "corpus")],
                   "destination": str(tmp_path / "out")}  # as a user points it at the corpus in the UI
        client.update_flow_run(upcoming.id, parameters={"request": request})
        client.set_flow_run_state(upcoming.id, Scheduled(scheduled_time=datetime.now(timezone.utc)), force=True)
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: flow_run_state(upcoming.id) in {"Completed", "Failed", "Crashed"}, 300, 1.0, "the run to end")
    finally:
        kill_machine(worker)
    assert flow_run_state(upcoming.id) == "Completed"
    with get_client(sync_client=True) as client:
        started = client.read_flow_run(upcoming.id).expected_start_time
    assert started is not None
    report = json.loads((tmp_path / "out" / f"corpus-{started.astimezone(timezone.utc):%Y-%m-%d}" / "report.json").read_text())
    assert sorted(report["languages"]) == ["de", "en", "es", "fr", "sa", "zh"] and len(report["plots"]) == 4
