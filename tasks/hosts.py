"""What the machine offers a worker: its GPU class, how long it may live, secrets, release.

`LocalHost` serves laptops, lab boxes and tests; `ColabHost` wraps `google.colab`, imported only
on Colab. Everything a worker decides is made through this interface, so it is tested off Colab.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from typing import Protocol

import psutil

GPU_CLASSES = ("a100", "l4", "t4")
COLAB_RUNTIME_LIMIT_SECONDS = 24 * 3600


def gpu_class_of(device_name: str) -> str:
    """Map a GPU's name to a work queue: a100, l4, t4, or any for other GPUs."""
    lowered = device_name.lower()
    for gpu_class in GPU_CLASSES:
        if gpu_class in lowered.replace(" ", ""):
            return gpu_class
    return "any"


def detect_gpu_name() -> str | None:
    """The first GPU's name, through torch.cuda when torch is there, else nvidia-smi; None without one."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    query = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
    )
    names = query.stdout.strip().splitlines()
    return names[0].strip() if query.returncode == 0 and names else None


class Host(Protocol):
    """The machine a worker runs on."""

    def gpu_class(self) -> str:
        """Work queue for this machine's GPU: a100, l4, t4, any (another GPU) or cpu."""
        ...

    def time_budget_seconds(self) -> float | None:
        """Seconds the machine may still run, or None when it has no limit."""
        ...

    def secret(self, name: str) -> str | None:
        """A secret the machine holds (Colab secrets, environment), or None."""
        ...

    def release(self) -> None:
        """Give the machine back, so it stops costing money."""
        ...


class LocalHost:
    """Any machine: secrets from the environment; release runs a command when one is given."""

    def __init__(self, release_command: list[str] | None = None) -> None:
        self.release_command = release_command

    def gpu_class(self) -> str:
        name = detect_gpu_name()
        return "cpu" if name is None else gpu_class_of(name)

    def time_budget_seconds(self) -> float | None:
        return None

    def secret(self, name: str) -> str | None:
        return os.environ.get(name)

    def release(self) -> None:
        if self.release_command:
            subprocess.run(self.release_command, check=True, timeout=120)


class ColabHost(LocalHost):
    """A Google Colab runtime: 24 h cap, Colab secrets, `runtime.unassign()` to release."""

    def time_budget_seconds(self) -> float | None:
        """24 h from the runtime's start, not from the worker's.

        The runtime's start is taken as the start of PID 1, the runtime container's first
        process (`/proc/uptime` would be the host machine's). Not yet checked on a real runtime.
        """
        started = float(psutil.Process(1).create_time())
        return max(0.0, COLAB_RUNTIME_LIMIT_SECONDS - (time.time() - started))

    def secret(self, name: str) -> str | None:
        from google.colab import userdata

        try:
            return str(userdata.get(name))
        except Exception:  # noqa: BLE001 - outside the kernel (a worker process) userdata cannot answer
            return os.environ.get(name)

    def release(self) -> None:
        """Unassign the runtime. Its request goes out first; an error after it (the call also
        talks to the notebook kernel, which a worker process is not) means it was sent."""
        from google.colab import runtime

        try:
            runtime.unassign()
        except Exception as error:  # noqa: BLE001 - see the docstring
            print(f"colabflow worker: runtime.unassign() ended with {error!r} after its request", flush=True)


def current_host() -> Host:
    """ColabHost inside Colab, LocalHost elsewhere.

    On other machines `COLABFLOW_RELEASE_COMMAND` (split like a shell line) is what release runs,
    e.g. `sudo shutdown -h now` on a rented GPU box; without it, release only stops the worker.
    """
    try:
        import google.colab  # noqa: F401
    except ImportError:
        command = os.environ.get("COLABFLOW_RELEASE_COMMAND")
        return LocalHost(shlex.split(command) if command else None)
    return ColabHost()
