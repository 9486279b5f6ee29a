"""Secrets: the GitHub token and the webhook key reach only the requests they authorise or sign.

Two Prefect Secret blocks hold canary values. A `colabflow compress` subprocess reads a GitHub
repository that answers 401 without the token (pytest-httpserver), writes to gs://
(gcp-storage-emulator) and signs its webhook, with every logger at DEBUG. Then every place a
person or the API can see is searched for the canaries: the process output, the run's logs,
artifacts, flow and task runs as the API stores them, every object of the job folder and every
file the process left in its PREFECT_HOME. A rejected token is checked the same way.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tasks.engine.callback import SIGNATURE_HEADER, sign_body
from tasks.storage.gcs import GcsStore
from tasks.storage.stores import StorageAccess, read_bytes
from tests.gcs_emulator import BUCKET, gcs_emulator
from tests.github_fake import serve_repository
from tests.servers import server_environment, wait_until

COLABFLOW = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "colabflow")
FLOW_NAME = "compress-chunks"
HOOK_PATH = "/hooks/colabflow"
PAGE = 200
BASE64_RUN = re.compile(r"[A-Za-z0-9+/\s]{24,}=*")


def decode_base64_runs(text: str) -> str:
    """What every base64-looking run of `text` decodes to, at each of the 4 alignments.

    Prefect keeps results (a failed run's exception among them) as base64 pickles.
    """
    decoded = []
    for run in BASE64_RUN.findall(text):
        compact = re.sub(r"[\s=]", "", run)
        for start in range(4):
            usable = compact[start:][: (len(compact) - start) // 4 * 4]
            decoded.append(base64.b64decode(usable).decode("latin-1"))
    return "\n".join(decoded)


@dataclass(frozen=True)
class Canaries:
    """Two Secret blocks with values that must never be seen outside the requests that use them."""

    github_block: str
    github_token: str
    webhook_block: str
    webhook_key: str

    def found_in(self, text: str) -> list[str]:
        """Which secrets `text` shows, plain or in base64, whole or by their random part (or just the marker)."""
        text += decode_base64_runs(text)
        secrets = (("the GitHub token", self.github_token), ("the webhook key", self.webhook_key))
        found = [label for label, value in secrets if value.rpartition("_")[2] in text]
        return found or (["a LEAKCANARY fragment"] if "LEAKCANARY" in text else [])


@pytest.fixture
def canaries(prefect_api: str) -> Canaries:
    """Save a GitHub token and a webhook key as Secret blocks on the session's server."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    tag = uuid.uuid4().hex[:8]
    values = Canaries(f"secrets-github-{tag}", f"ghp_LEAKCANARY_{uuid.uuid4().hex}",
                      f"secrets-webhook-{tag}", f"whsec_LEAKCANARY_{uuid.uuid4().hex}")
    Secret(value=SecretStr(values.github_token)).save(values.github_block)
    Secret(value=SecretStr(values.webhook_key)).save(values.webhook_block)
    return values


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """gcp-storage-emulator, also used by this process to read the job folder back."""
    with gcs_emulator() as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        yield url


def require_token(server: HTTPServer, token: str) -> None:
    """Make every /repos/ request without `Authorization: Bearer <token>` answer 401, as GitHub does.

    Registered before the repository's handlers, so it is matched first.
    """
    server.expect_request(
        re.compile(r"^/repos/"), headers={"Authorization": f"Bearer {token}"},
        header_value_matcher=lambda _name, actual, expected: actual != expected,
    ).respond_with_json({"message": "Bad credentials", "status": "401"}, status=401)


def repository_files() -> dict[str, bytes]:
    return {f"corpus/part-{index:02d}.txt": f"private chunk {index:02d}\n".encode() * 300 for index in range(9)}


def run_compress(
    tmp_path: Path, api_url: str, server: HTTPServer, repository: str, emulator: str, canaries: Canaries, job: str
) -> subprocess.CompletedProcess[str]:
    """`colabflow compress` from the repository to gs:// with a signed webhook, everything logged at DEBUG."""
    env = server_environment(tmp_path / f"home-{job}", api_url)
    env.update({
        "STORAGE_EMULATOR_HOST": emulator,
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "colabflow",
    })
    command = [
        COLABFLOW, "compress", f"github://{repository}@main/corpus", f"gs://{BUCKET}/jobs", "--job", job,
        "--batch-size", "3", "--github", canaries.github_block, "--github-api-url", server.url_for("").rstrip("/"),
        "--webhook", server.url_for(HOOK_PATH), "--webhook-secret-block", canaries.webhook_block, "--json",
    ]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


def flow_run_of(client: Any, job: str) -> Any:
    """The one flow run of `compress-chunks` whose stored parameters name `job` (among the newest)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                                 sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=PAGE)
    matching = [run for run in runs if run.parameters.get("request", {}).get("job") == job]
    assert len(matching) == 1, f"expected one {FLOW_NAME} run of job {job!r}, found {len(matching)}"
    return matching[0]


def run_logs(client: Any, flow_run_id: uuid.UUID) -> list[Any]:
    """Every log of one flow run (its tasks' too), page by page."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    logs: list[Any] = []
    while page := client.read_logs(log_filter=log_filter, limit=PAGE, offset=len(logs)):
        logs += page
    return logs


def wait_for_log(client: Any, flow_run_id: uuid.UUID, words: str) -> list[Any]:
    """Logs travel from the process to the API in the background: wait for the line with `words`."""

    def arrived() -> list[Any]:
        logs = run_logs(client, flow_run_id)
        return logs if any(words in log.message for log in logs) else []

    return wait_until(arrived, 30, 0.2, f"the log {words!r} at the API")  # type: ignore[no-any-return]


def api_records(client: Any, flow_run_id: uuid.UUID, logs: list[Any]) -> dict[str, str]:
    """Everything the API keeps about one flow run, as text by where it came from."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    records = {"flow run": client.read_flow_run(flow_run_id).model_dump_json()}
    for task_run in client.read_task_runs(flow_run_filter=run_filter):
        records[f"task run {task_run.name}"] = task_run.model_dump_json()
    for artifact in client.read_artifacts(flow_run_filter=run_filter):
        records[f"artifact {artifact.key} ({artifact.type}) {artifact.id}"] = artifact.model_dump_json()
    for log in logs:
        records[f"log {log.id} from {log.name}"] = log.model_dump_json()
    return records


def job_objects(prefix: str) -> dict[str, str]:
    """Every object under `prefix` in the bucket, unzipped when it is a gzip member, as text."""
    bucket = GcsStore(BUCKET, StorageAccess())
    objects = {}
    for info in bucket.list(prefix):
        data = read_bytes(bucket, info.key)
        if info.key.endswith(".gz"):
            data = gzip.decompress(data)
        objects[f"gs://{BUCKET}/{info.key}"] = data.decode("latin-1")
    return objects


def home_files(home: Path) -> dict[str, str]:
    """Every file the process left in its PREFECT_HOME (result storage, local settings, caches)."""
    return {str(path): path.read_bytes().decode("latin-1") for path in home.rglob("*") if path.is_file()}


def assert_no_secret_in(canaries: Canaries, places: dict[str, str]) -> None:
    """Fail naming every place that shows a secret, and which one."""
    leaks = [f"{where}: {', '.join(found)}" for where, text in places.items() if (found := canaries.found_in(text))]
    assert not leaks, "secret values are visible in:\n" + "\n".join(leaks)


def test_no_secret_reaches_output_logs_artifacts_runs_or_the_job_folder(
    tmp_path: Path, prefect_api: str, httpserver: HTTPServer, canaries: Canaries, emulator: str
) -> None:
    """A token-protected GitHub source and a signed webhook: the canaries appear nowhere visible."""
    from prefect.client.orchestration import get_client

    require_token(httpserver, canaries.github_token)
    repository = serve_repository(httpserver, repository_files())
    httpserver.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")

    result = run_compress(tmp_path, prefect_api, httpserver, repository, emulator, canaries, "secrets")

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["compressed"] == 9
    hooks = [request for request, _ in httpserver.log if request.path == HOOK_PATH]
    assert len(hooks) == 1
    assert hooks[0].headers[SIGNATURE_HEADER] == sign_body(hooks[0].get_data(), canaries.webhook_key)
    assert any(request.headers.get("Authorization") == f"Bearer {canaries.github_token}"
               for request, _ in httpserver.log), "the token was never sent to GitHub"
    job_folder = job_objects("jobs/secrets")
    flow_run_id = uuid.UUID(json.loads(job_folder[f"gs://{BUCKET}/jobs/secrets/job.json"])["flow_run_id"])
    for kind in ("manifest.jsonl", "quarantine.jsonl", ".checkpoints/batches/batch-", ".checkpoints/unit-",
                 ".checkpoints/callback-", "/recipes/", "telemetry/"):
        assert any(kind in key for key in job_folder), f"no {kind} among {sorted(job_folder)}"
    with get_client(sync_client=True) as client:
        flow_run = flow_run_of(client, "secrets")
        assert flow_run.id == flow_run_id, "job.json names another flow run"
        request = flow_run.parameters["request"]
        assert (request["access"]["github_token"], request["callback"]["secret_block"]) == (
            canaries.github_block, canaries.webhook_block), "the stored parameters should name the blocks"
        records = api_records(client, flow_run_id, wait_for_log(client, flow_run_id, "callback to"))
    assert sum(where.startswith("artifact ") for where in records) >= 2
    assert sum(where.startswith("log ") for where in records) >= 5
    assert_no_secret_in(canaries, {"stdout": result.stdout, "stderr": result.stderr, **records, **job_folder,
                                   **home_files(tmp_path / "home-secrets")})


def test_a_rejected_token_fails_naming_its_block_and_never_echoes_it(
    tmp_path: Path, prefect_api: str, httpserver: HTTPServer, canaries: Canaries, emulator: str
) -> None:
    """GitHub answers 401 to the block's token: exit 2, the block is named, its value is nowhere."""
    from prefect.client.orchestration import get_client

    require_token(httpserver, f"ghp_the_only_token_github_accepts_{uuid.uuid4().hex}")
    repository = serve_repository(httpserver, repository_files())

    result = run_compress(tmp_path, prefect_api, httpserver, repository, emulator, canaries, "secrets-denied")

    assert result.returncode == 2, result.stderr[-3000:]
    assert f"GitHub rejected the token in Secret block {canaries.github_block!r} (401)" in result.stderr
    assert {(request.headers["Authorization"], response.status_code) for request, response in httpserver.log} == {
        (f"Bearer {canaries.github_token}", 401)}
    assert not any(request.path == HOOK_PATH for request, _ in httpserver.log)
    with get_client(sync_client=True) as client:
        flow_run = flow_run_of(client, "secrets-denied")
        assert flow_run.state.is_failed()
        records = api_records(client, flow_run.id, wait_for_log(client, flow_run.id, "Finished in state Failed"))
    assert any(canaries.github_block in text for text in records.values()), "the API never names the block"
    job_folder = job_objects("jobs/secrets-denied")
    assert_no_secret_in(canaries, {"stdout": result.stdout, "stderr": result.stderr, **records, **job_folder,
                                   **home_files(tmp_path / "home-secrets-denied")})
