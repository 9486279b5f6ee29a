"""`google.colab.runtime.unassign`, which records the call; unassign.mode picks how it ends."""

from __future__ import annotations

from google.colab import errors, record, state_file


def unassign() -> None:
    """Record an unassign; refuse it, or fail after it as the real call does outside the kernel."""
    path = state_file("unassign.mode")
    mode = path.read_text().strip() if path.exists() else "ok"
    if mode == "rejected":
        raise errors.RuntimeManagementError("Unable to request VM unassignment.")
    record("unassign")
    if mode == "no-kernel":
        raise AttributeError("'NoneType' object has no attribute 'shell'")
