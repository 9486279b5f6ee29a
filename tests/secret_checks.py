"""The check that a secret reached no file of a job folder, no command output and no log line of its run."""

from __future__ import annotations

import json
from pathlib import Path


def assert_secret_nowhere(secret: str, job_dir: Path, output: str) -> None:
    """`secret` is in no file below `job_dir`, not in `output`, and in no log line of the run `job.json` names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    assert not [path for path in job_dir.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert secret not in output
    run_id = json.loads((job_dir / "job.json").read_text())["flow_run_id"]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert logs and not [log for log in logs if secret in log.message]
