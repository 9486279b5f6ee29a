"""Retry policy shared by every Prefect task: retry I/O trouble, never bad input."""

from __future__ import annotations

from typing import Any

from tasks.errors import is_retryable

IO_RETRY_DELAYS = [2.0, 10.0, 30.0]


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` for Prefect tasks: True only for errors a later attempt may fix."""
    error = state.data
    return isinstance(error, BaseException) and is_retryable(error)
