"""The pool that the iterate pool tests share: deployed on the session's server, with the lab's programs allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pool import deploy
from tests.servers import server_environment

ITERATIONS, EVERY, GATE = 3000, 500, 700
CRASH_AFTER_S = 60  # twice the heartbeat (every 30 s, Prefect's least): room for a late one on a busy machine


@pytest.fixture
def lab_env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """The pool deployed; workers that may import the lab's programs, which stop at iteration GATE until drained."""
    env = server_environment(tmp_path / "client-home", prefect_api)
    env.update(PREFECT_WORKER_QUERY_SECONDS="2", PYTHONPATH=str(tmp_path / "lab"),
               COLABFLOW_ALLOWED_CODE="labprograms,tasks.*.examples", GATE_ITERATION=str(GATE),
               GATE_FILE=str(tmp_path / "gate"), GATE_UNTIL="drain")
    deploy(env, "--crash-after", f"{CRASH_AFTER_S}s", "--reschedule-after", "10s")
    return env
