"""`google.colab.drive.mount`, which records the mountpoint instead of starting DriveFS."""

from __future__ import annotations

from google.colab import record


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    """Record the mount, with the real signature."""
    record(f"mount {mountpoint}")
