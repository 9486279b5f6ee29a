"""What the machine offers a worker: its GPU class, how long it may live, secrets, release.

`LocalHost` serves laptops, lab boxes and tests; `ColabHost` wraps `google.colab`, imported only
on Colab. Everything a worker decides is made through this interface, so it is tested off Colab.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Protocol

import psutil

from tasks.errors import RemoteUnavailableError
from tasks.gpu.devices import detect_gpu_name, gpu_class_of

COLAB_RUNTIME_LIMIT_SECONDS = 24 * 3600
DRIVE_MOUNTPOINT = "/content/drive"


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

    def mount_drive(self, mountpoint: str = DRIVE_MOUNTPOINT) -> bool:
        """Mount Google Drive at `mountpoint`; False when the machine has no Drive to mount."""
        ...


class LocalHost:
    """Any machine: secrets from the environment; release runs a command when one is given.

    It mounts no Drive: its own disk already outlives the worker, and `gdrive://` locations
    (docs/storage.md) reach Drive from any machine.
    """

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

    def mount_drive(self, mountpoint: str = DRIVE_MOUNTPOINT) -> bool:
        """Mount nothing (see the class docstring), and say so."""
        return False


def container_started() -> float:
    """When this container started (epoch seconds): the start of PID 1, its first process.

    `/proc/uptime` would give the host machine's boot instead, which can be days earlier.
    """
    return float(psutil.Process(1).create_time())


class ColabHost(LocalHost):
    """A Google Colab runtime: 24 h cap, Colab secrets, Drive, `runtime.unassign()` to release."""

    def __init__(self, runtime_started: Callable[[], float] = container_started,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.runtime_started = runtime_started
        self.clock = clock

    def time_budget_seconds(self) -> float | None:
        """24 h from the runtime's start, not from the worker's: a worker started late gets less.

        The runtime's start is `runtime_started()`, by default the container's (PID 1). That
        Colab's cap counts from the container's start is not yet checked on a real runtime.
        """
        return max(0.0, COLAB_RUNTIME_LIMIT_SECONDS - (self.clock() - self.runtime_started()))

    def secret(self, name: str) -> str | None:
        """The Colab secret when this notebook may read it, else the environment's value.

        Colab answers only inside the notebook kernel; a worker process (a child of the kernel)
        finds the secrets the notebook exported in its environment instead.
        """
        from google.colab import userdata

        try:
            return str(userdata.get(name))
        except Exception:  # noqa: BLE001 - missing, not shared, or no kernel to ask: see the docstring
            return os.environ.get(name)

    def release(self) -> None:
        """Unassign the runtime, so it stops using compute units.

        `unassign()` first asks Colab's runtime service, then tells the notebook's page to
        disconnect. A worker process is not the kernel, so that second step fails once the
        runtime is already released; only `RuntimeManagementError` means it was not.
        """
        from google.colab import errors, runtime

        try:
            runtime.unassign()
        except errors.RuntimeManagementError as error:
            raise RemoteUnavailableError(
                f"runtime.unassign() did not release this Colab runtime: {error}. It keeps using "
                "compute units until you choose Runtime > Disconnect and delete runtime."
            ) from error
        except Exception as error:  # noqa: BLE001 - see the docstring
            print(f"colabflow worker: runtime released; its page was not told ({type(error).__name__})", flush=True)

    def mount_drive(self, mountpoint: str = DRIVE_MOUNTPOINT) -> bool:
        """Mount the user's Drive; Colab asks for access the first time. Only the kernel can do it."""
        from google.colab import drive

        drive.mount(mountpoint)
        return True


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
