"""GitHub's REST API for one repository: GETs retried, refusals turned into errors that say what to fix.

Rate limits, 5xx answers, network trouble and cut-short bodies are retried (a rate limit waits
for the reset GitHub names); a missing repository, a refused token and a blob past 100 MB
(403 `too_large`) are raised at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from tasks.errors import (
    RemoteUnavailableError,
    SourceNotFoundError,
    StorageRejectedError,
)
from tasks.storage.retries import RetryPolicy, parse_retry_after, transient_wait

T = TypeVar("T")

logger = logging.getLogger("colabflow.github")

JSON = "application/vnd.github+json"
SHA = "application/vnd.github.sha"
RAW = "application/vnd.github.raw+json"
API_VERSION = "2022-11-28"


@cache
def shared_client() -> httpx.Client:
    """One connection pool per process: a place is built per chunk URI, and TLS per chunk would dominate."""
    return httpx.Client(timeout=30.0, follow_redirects=True)


class GitHubApi:
    """The REST endpoints below /repos/OWNER/REPO, read with an optional token."""

    def __init__(
        self, owner: str, repo: str, *, api_url: str, token: SecretStr | None, token_block: str | None,
        policy: RetryPolicy, client: httpx.Client,
    ) -> None:
        self.owner, self.repo = owner, repo
        self.api_url = api_url
        self.token_block = token_block
        self.policy = policy
        self._token = token
        self._client = client

    def get(
        self, path: str, accept: str, subject: str, read: Callable[[httpx.Response], T],
        params: dict[str, str] | None = None,
    ) -> T:
        """GET below /repos/OWNER/REPO; retry what may pass (rate limits, 5xx, network, cut-short bodies)."""
        url = f"{self.api_url}/repos/{self.owner}/{self.repo}" + (f"/{path}" if path else "")
        headers = {"Accept": accept, "X-GitHub-Api-Version": API_VERSION}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"

        def once() -> T:
            try:
                with self._client.stream("GET", url, headers=headers, params=params) as response:
                    if response.is_success:
                        return read(response)
                    raise self._failure(response, subject)
            except httpx.TransportError as error:
                raise RemoteUnavailableError(f"GitHub could not be reached for {subject}: {type(error).__name__}") from None

        return self.policy.run(once, logger)

    def _failure(self, response: httpx.Response, subject: str) -> RemoteUnavailableError:
        """The transient failure an answer means; raise at once for answers a retry cannot fix."""
        status, headers = response.status_code, response.headers
        transient, wait = transient_wait(status, headers)
        if status == 403 and "Retry-After" in headers:  # GitHub's secondary rate limit
            transient, wait = True, parse_retry_after(headers["Retry-After"])
        if transient and status in (403, 429):
            advice = "" if self._token else " (anonymous: 60 requests an hour; set github_token for 5,000)"
            return RemoteUnavailableError(f"GitHub rate limit reached ({status}) for {subject}{advice}", wait)
        if transient:
            return RemoteUnavailableError(f"GitHub answered {status} for {subject}", wait)
        if status == 403 and _too_large(response):
            raise StorageRejectedError(
                f"GitHub refused {subject} as too large (403 too_large): its blobs API serves blobs up to 100 MB; "
                "clone the repository and compress the clone as a local directory"
            )
        block = f"Secret block {self.token_block!r}"
        if status in (404, 422):
            hint = (f"or the token in {block} cannot see it" if self._token else
                    "private repositories answer 404 without a token: set github_token to a Secret block holding one")
            raise SourceNotFoundError(f"GitHub has no {subject} at {self.api_url} ({status}); check it, {hint}")
        if status == 401 and self._token:
            raise StorageRejectedError(f"GitHub rejected the token in {block} (401): it is invalid or expired; "
                                       "put a valid token in that block")
        if status in (401, 403) and not self._token:
            raise StorageRejectedError(f"GitHub refused anonymous access to {subject} ({status}); set github_token "
                                       "to a Secret block holding a token with Contents: read")
        if status == 403:
            raise StorageRejectedError(f"the token in {block} may not read {subject} (403); give it Contents: read "
                                       "(fine-grained) or the repo scope (classic)")
        raise StorageRejectedError(f"GitHub answered {status} for {subject}; check the location")


def read_json(response: httpx.Response) -> Any:
    """The whole body, parsed as JSON."""
    response.read()
    return response.json()


def _too_large(response: httpx.Response) -> bool:
    """Whether a refusal is GitHub's `too_large` (a blob past the API's size limit), not a permission."""
    try:
        errors = json.loads(response.read()).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(error, dict) and error.get("code") == "too_large" for error in errors)
