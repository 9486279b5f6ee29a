"""A lab's pool on PostgreSQL: the server's database is a real PostgreSQL server that the test starts.

`pytest -k postgres` selects it. It is benchmarks/pool_soak.py scaled down: three workers, one job
of each kind, and one kill -9 gated on the iterative job standing at a chosen iteration, so the
kill always lands mid-run whatever this machine's speed. The completed runs are counted in
PostgreSQL itself, with psql.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.pool_soak import Pool, SoakOptions, Submitted, run_soak
from tests.iterations.gated import write_gated_program
from tests.servers import wait_until

GATE = 300
ITERATE_JOB = "soak-02"  # the kinds in turn: compress, map, iterate, analyze


@pytest.mark.slow
def test_a_mixed_pool_on_postgres_loses_nothing_when_a_worker_is_killed(tmp_path: Path) -> None:
    """Three workers, a job of each kind, the iterative job's worker killed mid-run: every job completes and
    verifies, nothing is lost or duplicated, no run is left Running, Pending or Late, and PostgreSQL holds
    the four completed runs."""
    lab = tmp_path / "lab"
    program = write_gated_program(lab, "hill_climb", "HillClimb")
    gate = tmp_path / "gate"
    options = SoakOptions(workers=3, jobs=4, scale=1, database="postgresql", iterate_program=program,
                          completion_timeout_s=600,
                          extra_env={"PYTHONPATH": str(lab), "COLABFLOW_ALLOWED_CODE": "labprograms,tasks.*.examples",
                                     "GATE_ITERATION": str(GATE), "GATE_FILE": str(gate), "GATE_UNTIL": "release"})

    def kill_at_the_gate(pool: Pool, submitted: Submitted) -> None:
        wait_until(gate.exists, 300, 0.1, f"the iterative job to reach iteration {GATE}")
        iterate_run = wait_until(lambda: submitted.run_ids.get(ITERATE_JOB), 60, 0.1, "the iterative job's run id")
        pool.kill(wait_until(lambda: pool.holder(iterate_run), 60, 0.1, "the worker holding the iterative job"))
        Path(f"{gate}.release").touch()

    result = run_soak(tmp_path / "soak", options, kill_at_the_gate)
    shown = json.dumps(result, default=str)
    assert result["kills_of_busy_workers"] == 1 and len(result["recovery_s"]) == 1, shown
    assert (result["completed"], result["lost"], result["duplicated"]) == (4, 0, 0), shown
    assert result["stuck"] == [] and result["unverified"] == [] and result["extra_runs"] == 0, shown
    assert result["completed_in_database"] == 4, shown
