"""Callback stage: tell a webhook or GitHub that a job finished, once per job.

Transient answers (429, 5xx, network errors) are retried with exponential backoff that honours
`Retry-After`. Answers a retry cannot fix (401, 403, 404, other 4xx) fail at once, naming the
setting to change. Secrets are used only to sign or authorise, never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from tasks.engine.checkpoints import checkpoint_storage
from tasks.engine.models import JobReportBase, JobSettings
from tasks.engine.parameters import GitHubDispatchCallback, WebhookCallback
from tasks.errors import (
    CallbackRejectedError,
    InvalidParameterError,
    RemoteUnavailableError,
)
from tasks.storage.retries import RetryPolicy, transient_wait

SIGNATURE_HEADER = "X-Colabflow-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class CallbackReceipt(BaseModel):
    """Proof that a callback was delivered; persisted so it is sent once per job."""

    target: str
    idempotency_key: str
    status_code: int
    attempts: int


def idempotency_key(job: str, manifest_sha256: str) -> str:
    """The key a receiver uses to drop duplicates: job name plus manifest hash."""
    return hashlib.sha256(f"{job}\n{manifest_sha256}".encode()).hexdigest()


def sign_body(body: bytes, secret: str) -> str:
    """HMAC-SHA256 of the exact body, as `sha256=<hex>` (the GitHub webhook convention)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def redact_url(url: str) -> str:
    """The URL without query, fragment or credentials, fit for logs and messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def post_json(
    url: str, body: bytes, headers: dict[str, str], rejection_advice: Callable[[int], str],
    policy: RetryPolicy, client: httpx.Client | None = None,
) -> tuple[httpx.Response, int]:
    """POST with retries on transient answers; return the response and the attempts used."""
    owned = client is None
    client = client or httpx.Client(timeout=30.0)
    attempts = 0

    def once() -> httpx.Response:
        nonlocal attempts
        attempts += 1
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.TransportError as error:
            raise RemoteUnavailableError(f"{redact_url(url)} could not be reached: {type(error).__name__}") from None
        if response.is_success:
            return response
        transient, wait = transient_wait(response.status_code, response.headers)
        if transient:
            raise RemoteUnavailableError(f"{redact_url(url)} answered {response.status_code}", retry_after=wait)
        raise CallbackRejectedError(
            f"{redact_url(url)} answered {response.status_code}: {rejection_advice(response.status_code)}"
        )

    try:
        return policy.run(once), attempts
    finally:
        if owned:
            client.close()


def send_webhook(
    callback: WebhookCallback, report: JobReportBase, key: str, secret: str | None, policy: RetryPolicy
) -> CallbackReceipt:
    """POST the report as JSON, signed with the block's secret when one is set."""
    body = report.model_dump_json().encode()
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key, "X-Colabflow-Job": report.job}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign_body(body, secret)

    def advice(status: int) -> str:
        if status in (401, 403):
            return (f"the receiver refused the request; check that the key in Secret block "
                    f"{callback.secret_block!r} matches the receiver's")
        if status == 404:
            return "no such endpoint; check the callback url"
        return "the receiver rejected the report; check the receiver's logs"

    response, attempts = post_json(callback.url, body, headers, advice, policy)
    return CallbackReceipt(target=redact_url(callback.url), idempotency_key=key,
                           status_code=response.status_code, attempts=attempts)


def send_github_dispatch(
    callback: GitHubDispatchCallback, report: JobReportBase, key: str, token: str, policy: RetryPolicy
) -> CallbackReceipt:
    """Send `repository_dispatch` with the report in `client_payload`."""
    url = f"{callback.api_url.rstrip('/')}/repos/{callback.repository}/dispatches"
    payload: dict[str, Any] = {
        "event_type": callback.event_type,
        "client_payload": {"idempotency_key": key, "report": report.model_dump(mode="json")},
    }
    headers = {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": "2022-11-28",
        "Content-Type": "application/json",
    }

    def advice(status: int) -> str:
        if status == 401:
            return f"GitHub rejected the token; put a valid token in Secret block {callback.token_block!r}"
        if status == 403:
            return (f"the token in Secret block {callback.token_block!r} may not dispatch to "
                    f"{callback.repository!r}; give it the repo scope (classic) or Contents: write (fine-grained)")
        if status == 404:
            return (f"repository {callback.repository!r} was not found at {callback.api_url}, or the token "
                    "cannot see it; check the repository and api_url settings")
        return "GitHub rejected the event; check event_type and the payload size"

    response, attempts = post_json(url, json.dumps(payload).encode(), headers, advice, policy)
    return CallbackReceipt(target=f"github:{callback.repository}", idempotency_key=key,
                           status_code=response.status_code, attempts=attempts)


def load_secret(block_name: str) -> str:
    """Read a Prefect Secret block, with a message that says how to create a missing one."""
    from prefect.blocks.system import Secret

    try:
        value = cast("Secret[Any]", Secret.load(block_name)).get()
    except ValueError:
        raise InvalidParameterError(
            f"Secret block {block_name!r} was not found; create it in the Prefect UI (Blocks > Secret) "
            f"or with: python -c \"from prefect.blocks.system import Secret; Secret(value='...').save('{block_name}')\""
        ) from None
    return str(value)


def _callback_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    report: JobReportBase = parameters["report"]
    target = parameters["callback"].model_dump_json()
    key = idempotency_key(report.job, report.manifest_sha256)
    return "callback-" + hashlib.sha256(f"{key}\n{target}".encode()).hexdigest()


@task(name="send-callback", cache_key_fn=_callback_cache_key, persist_result=True, result_serializer="json")
def send_callback_task(callback: WebhookCallback | GitHubDispatchCallback, report: JobReportBase) -> CallbackReceipt:
    """Deliver the job report once; the persisted receipt stops a rerun from sending it again."""
    key = idempotency_key(report.job, report.manifest_sha256)
    if isinstance(callback, WebhookCallback):
        secret = load_secret(callback.secret_block) if callback.secret_block else None
        receipt = send_webhook(callback, report, key, secret, RetryPolicy())
    else:
        receipt = send_github_dispatch(callback, report, key, load_secret(callback.token_block), RetryPolicy())
    get_run_logger().info(
        "callback to %s answered %d after %d attempt(s)", receipt.target, receipt.status_code, receipt.attempts
    )
    return receipt


def send_callback(
    callback: WebhookCallback | GitHubDispatchCallback, report: JobReportBase, settings: JobSettings
) -> CallbackReceipt:
    """Run the callback task with its receipt kept next to the job's checkpoints."""
    return send_callback_task.with_options(result_storage=checkpoint_storage(settings))(callback, report)
