"""A wait for a remote store is logged in the flow run's log, where the Prefect UI shows it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from uuid import UUID

from tests.fault_proxy import Fault, fault_proxy
from tests.gcs_emulator import BUCKET, gcs_emulator
from tests.servers import server_environment, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_a_rate_limited_upload_is_retried_and_says_so_in_the_run_log(
    prefect_api: str, sample_source: Path, tmp_path: Path
) -> None:
    with gcs_emulator() as emulator, fault_proxy(emulator) as proxy:
        proxy.add(Fault("POST", "/upload/", 429, {"Retry-After": "1"}, b'{"error": {"code": 429, "message": "slow"}}'))
        env = server_environment(tmp_path / "home", prefect_api) | {"STORAGE_EMULATOR_HOST": proxy.url}
        result = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "colabflow"), "compress", str(sample_source), f"gs://{BUCKET}/logs",
             "--job", "rate-limited", "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout.strip().splitlines()[-1])["compressed"] == 8
    assert any(request.faulted for request in proxy.requests)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        newest = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["compress-chunks"])),
                                       sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50)
        [run] = [flow_run for flow_run in newest if flow_run.parameters.get("request", {}).get("job") == "rate-limited"]

        def wait_line() -> str | None:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(str(run.id))])), limit=200)
            return next((log.message for log in logs if "answered 429" in log.message), None)

        message = wait_until(wait_line, 60, 0.5, "the 429 wait in the run's log")
    assert "waiting 1.0 s before attempt 2" in message
