"""Retry rules shared by every Prefect task and every remote call: retry I/O trouble, never bad input.

Prefect task retries (`IO_RETRY_DELAYS`, `retry_if_transient`) cover a whole batch; the
`RetryPolicy` covers one HTTP request to a remote (GitHub, GCS, Drive, a webhook) and honours
the waits the remote asks for (`Retry-After`, GitHub's `X-RateLimit-Reset`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tasks.errors import RemoteUnavailableError, is_retryable

T = TypeVar("T")

IO_RETRY_DELAYS = [2.0, 10.0, 30.0]


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` for Prefect tasks: True only for errors a later attempt may fix."""
    error = state.data
    return isinstance(error, BaseException) and is_retryable(error)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient answer."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wanted = retry_after if retry_after is not None else self.base_delay * 2 ** (attempt - 1)
        return min(max(wanted, 0.0), self.max_delay)

    def run(self, operation: Callable[[], T], logger: logging.Logger | None = None) -> T:
        """Call `operation` until it returns, retrying each RemoteUnavailableError it raises.

        Between attempts it waits what the error asked for (`retry_after`) or the backoff, and
        logs the wait. Any other error propagates at once; the last transient one, once the
        attempts run out, as "gave up after N attempts".
        """
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except RemoteUnavailableError as error:
                failure = error
            if attempt < self.attempts:
                wait = self.delay(attempt, failure.retry_after)
                if logger is not None:
                    logger.warning("%s; waiting %.1f s before attempt %d of %d", failure, wait, attempt + 1, self.attempts)
                self.sleep(wait)
        raise RemoteUnavailableError(f"gave up after {self.attempts} attempts: {failure}")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def is_rate_limited(status_code: int, headers: Mapping[str, str]) -> bool:
    """True for 429, and for GitHub's 403 with no requests left in the window."""
    return status_code == 429 or (status_code == 403 and headers.get("X-RateLimit-Remaining") == "0")


def rate_limit_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds a rate-limited answer asks us to wait: `Retry-After`, else GitHub's reset time.

    None when the answer names no wait; the policy's exponential backoff applies then.
    """
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if retry_after is not None:
        return retry_after
    reset = headers.get("X-RateLimit-Reset")
    if reset and reset.isdigit():
        return max(0.0, float(reset) - time.time())
    return None


def transient_wait(status_code: int, headers: Mapping[str, str]) -> tuple[bool, float | None]:
    """Whether an HTTP answer is worth retrying (429, rate limit, 5xx), and the wait it asks for."""
    if is_rate_limited(status_code, headers):
        return True, rate_limit_wait(headers)
    if status_code >= 500:
        return True, parse_retry_after(headers.get("Retry-After"))
    return False, None
