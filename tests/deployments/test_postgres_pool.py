"""A lab's pool on PostgreSQL: the server's database is a real PostgreSQL server that the test starts.

`pytest -k postgres` selects these. The soak is benchmarks/pool_soak.py scaled down: three
workers, one job of each kind, and one kill -9 gated on the iterative job standing at a chosen
iteration, so the kill always lands mid-run whatever this machine's speed.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.pool_soak import Pool, SoakOptions, Submitted, run_soak
from tests.iterations.gated import write_gated_program
from tests.pool import deploy, kill_machine, start_deployment_run, start_worker, verify_with_cli
from tests.postgres import psql, postgres_server
from tests.servers import prefect_server, server_environment, wait_until

GATE = 300
ITERATE_JOB = "soak-02"  # the kinds in turn: compress, map, iterate, analyze


def test_a_server_on_postgres_keeps_its_runs_in_postgres(tmp_path: Path, sample_source: Path) -> None:
    """`prefect server start` with PREFECT_API_DATABASE_CONNECTION_URL: a deployed job completes, and psql finds its run."""
    with postgres_server() as url, prefect_server(tmp_path / "server", database_url=url) as api_url:
        env = server_environment(tmp_path / "client-home", api_url)
        env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
        deploy(env, "--crash-after", "60s", "--reschedule-after", "10s")
        destination = tmp_path / "out"
        request = {"source": [str(sample_source)], "destination": str(destination), "job": "lab"}
        flow_run_id = start_deployment_run(env, json.dumps({"request": request}))
        worker = start_worker(env, tmp_path / "worker.log")
        try:
            wait_until(lambda: psql(url, f"select state_type from flow_run where id = '{flow_run_id}'") == "COMPLETED",
                       300, 1.0, "the run to be Completed in PostgreSQL")
        finally:
            kill_machine(worker)
        assert psql(url, "select count(*) from automation where name like 'colabflow colab-gpu:%'") == "2"
    assert "0 problems" in verify_with_cli(env, destination / "lab")


def test_a_mixed_pool_on_postgres_loses_nothing_when_a_worker_is_killed(tmp_path: Path) -> None:
    """Three workers, a job of each kind, the iterative job's worker killed mid-run: every job completes and
    verifies, nothing is lost or duplicated, and no run is left Running, Pending or Late."""
    lab = tmp_path / "lab"
    program = write_gated_program(lab, "hill_climb", "HillClimb")
    gate = tmp_path / "gate"
    options = SoakOptions(workers=3, jobs=4, scale=1, database="postgresql", iterate_program=program,
                          completion_timeout_s=600,
                          extra_env={"PYTHONPATH": str(lab), "COLABFLOW_ALLOWED_CODE": "labprograms,tasks.*.examples",
                                     "GATE_ITERATION": str(GATE), "GATE_FILE": str(gate), "GATE_UNTIL": "release"})

    def kill_at_the_gate(pool: Pool, submitted: Submitted) -> None:
        wait_until(gate.exists, 300, 0.1, f"the iterative job to reach iteration {GATE}")
        iterate_run = submitted.run_ids[ITERATE_JOB]
        pool.kill(wait_until(lambda: pool.holder(iterate_run), 60, 0.1, "the worker holding the iterative job"))
        Path(f"{gate}.release").touch()

    result = run_soak(tmp_path / "soak", options, kill_at_the_gate)
    assert result["kills_of_busy_workers"] == 1 and len(result["recovery_s"]) == 1, result
    assert (result["completed"], result["lost"], result["duplicated"]) == (4, 0, 0), result
    assert result["stuck"] == [] and result["unverified"] == [], result
