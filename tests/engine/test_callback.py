from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tasks.compression.models import JobReport
from tasks.engine.callback import (
    idempotency_key,
    redact_url,
    send_github_dispatch,
    send_webhook,
)
from tasks.engine.parameters import GitHubDispatchCallback, WebhookCallback
from tasks.errors import CallbackRejectedError, RemoteUnavailableError
from tasks.storage.retries import RetryPolicy, parse_retry_after

REPORT = JobReport(
    job="corpus", chunks_total=2, compressed=2, reused=0, failed=[], bytes_in=10, bytes_out=5,
    seconds=0.1, batches_total=1, batches_reused=0, chunks_read=2, manifest_sha256="ab" * 32,
)


class RecordedSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def policy(sleep: RecordedSleep, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=5.0, sleep=sleep)


def test_webhook_body_is_the_report_signed_with_hmac(httpserver: HTTPServer) -> None:
    """The receiver gets the report as JSON, a valid HMAC-SHA256 signature and the idempotency key."""
    httpserver.expect_oneshot_request("/hook", method="POST").respond_with_data("ok")
    key = idempotency_key("corpus", REPORT.manifest_sha256)
    receipt = send_webhook(WebhookCallback(url=httpserver.url_for("/hook")), REPORT, key, "s3cret", policy(RecordedSleep()))
    request, _ = httpserver.log[0]
    expected = "sha256=" + hmac.new(b"s3cret", request.get_data(), hashlib.sha256).hexdigest()
    assert request.headers["X-Colabflow-Signature"] == expected
    assert request.headers["Idempotency-Key"] == key
    assert JobReport.model_validate_json(request.get_data()) == REPORT
    assert (receipt.status_code, receipt.attempts) == (200, 1)
    assert "s3cret" not in receipt.model_dump_json()


def test_webhook_retries_503_honouring_retry_after(httpserver: HTTPServer) -> None:
    """Two 503s (Retry-After: 3) then 200: three requests, and the waits follow the header."""
    httpserver.expect_ordered_request("/hook").respond_with_response(Response("busy", 503, {"Retry-After": "3"}))
    httpserver.expect_ordered_request("/hook").respond_with_response(Response("busy", 503))
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    sleep = RecordedSleep()
    receipt = send_webhook(WebhookCallback(url=httpserver.url_for("/hook")), REPORT, "k", None, policy(sleep))
    assert receipt.attempts == 3
    assert sleep.delays == [3.0, 1.0]
    assert "X-Colabflow-Signature" not in httpserver.log[0][0].headers


def test_webhook_401_fails_at_once_naming_the_secret_block(httpserver: HTTPServer) -> None:
    """A 401 is not retried, and the message names the setting to fix."""
    httpserver.expect_request("/hook").respond_with_data("no", status=401)
    callback = WebhookCallback(url=httpserver.url_for("/hook") + "?token=hidden", secret_block="hook-key")
    with pytest.raises(CallbackRejectedError) as caught:
        send_webhook(callback, REPORT, "k", "s3cret", policy(RecordedSleep()))
    assert len(httpserver.log) == 1
    assert "answered 401" in str(caught.value) and "Secret block 'hook-key'" in str(caught.value)
    assert "hidden" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_webhook_that_stays_down_gives_up_after_the_attempts(httpserver: HTTPServer) -> None:
    """Persistent 500s exhaust the attempts and raise a retryable error."""
    httpserver.expect_request("/hook").respond_with_data("down", status=500)
    sleep = RecordedSleep()
    with pytest.raises(RemoteUnavailableError, match="gave up after 3 attempts"):
        send_webhook(WebhookCallback(url=httpserver.url_for("/hook")), REPORT, "k", None, policy(sleep, attempts=3))
    assert sleep.delays == [0.5, 1.0]


def test_github_dispatch_sends_event_type_and_report(httpserver: HTTPServer) -> None:
    """repository_dispatch carries event_type, the report and a bearer token."""
    httpserver.expect_oneshot_request("/repos/lab/corpus/dispatches", method="POST").respond_with_data("", status=204)
    callback = GitHubDispatchCallback(repository="lab/corpus", token_block="gh", api_url=httpserver.url_for("/"))
    receipt = send_github_dispatch(callback, REPORT, "key-1", "ghp_token", policy(RecordedSleep()))
    request, _ = httpserver.log[0]
    body = json.loads(request.get_data())
    assert body["event_type"] == "colabflow-job-finished"
    assert body["client_payload"] == {"idempotency_key": "key-1", "report": REPORT.model_dump(mode="json")}
    assert request.headers["Authorization"] == "Bearer ghp_token"
    assert (receipt.status_code, receipt.target) == (204, "github:lab/corpus")


def test_github_rate_limit_403_waits_for_the_reset(httpserver: HTTPServer) -> None:
    """403 with X-RateLimit-Remaining: 0 is a wait, not a failure."""
    httpserver.expect_ordered_request("/repos/lab/corpus/dispatches").respond_with_response(
        Response("limited", 403, {"X-RateLimit-Remaining": "0", "Retry-After": "2"})
    )
    httpserver.expect_ordered_request("/repos/lab/corpus/dispatches").respond_with_data("", status=204)
    sleep = RecordedSleep()
    callback = GitHubDispatchCallback(repository="lab/corpus", token_block="gh", api_url=httpserver.url_for("/"))
    assert send_github_dispatch(callback, REPORT, "k", "t", policy(sleep)).attempts == 2
    assert sleep.delays == [2.0]


@pytest.mark.parametrize(
    ("status", "advice"),
    [(401, "put a valid token in Secret block 'gh'"), (403, "give it the repo scope"), (404, "was not found at")],
)
def test_github_refusals_name_the_setting_to_fix(httpserver: HTTPServer, status: int, advice: str) -> None:
    """401, 403 and 404 fail fast with advice on the token or repository."""
    httpserver.expect_request("/repos/lab/corpus/dispatches").respond_with_data("{}", status=status)
    callback = GitHubDispatchCallback(repository="lab/corpus", token_block="gh", api_url=httpserver.url_for("/"))
    with pytest.raises(CallbackRejectedError, match=advice):
        send_github_dispatch(callback, REPORT, "k", "secret-token", policy(RecordedSleep()))
    assert len(httpserver.log) == 1


def test_an_unreachable_receiver_is_retryable() -> None:
    """A refused connection is retried and ends as RemoteUnavailableError."""
    sleep = RecordedSleep()
    with pytest.raises(RemoteUnavailableError, match="could not be reached"):
        send_webhook(WebhookCallback(url="http://127.0.0.1:9/hook"), REPORT, "k", None, policy(sleep, attempts=2))
    assert len(sleep.delays) == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Both forms of Retry-After are understood; garbage is ignored."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_the_idempotency_key_depends_on_job_and_manifest() -> None:
    """Same job and manifest give the same key; a different manifest gives another."""
    assert idempotency_key("a", "1") == idempotency_key("a", "1") != idempotency_key("a", "2")


def test_urls_are_redacted_for_messages() -> None:
    """Credentials and query strings never reach messages."""
    assert redact_url("https://user:pw@hooks.example:8443/x/y?token=t#f") == "https://hooks.example:8443/x/y"

