"""Stops the temporary Prefect server of a command that was killed.

Without a `PREFECT_API_URL`, `colabflow compress` and `colabflow map` run on a temporary server
that Prefect starts as a child process and stops at exit. A command killed with SIGKILL (the
host's out-of-memory killer picks the process holding the model) never reaches that exit, and
the server lives on, orphaned, holding a few hundred MB; a shell loop that restarts the
command leaks one per kill. So such a command starts this watcher first: it notes the
command's server processes while the command lives, and stops them once it is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

SERVER_MARK = "prefect.server.api.server"  # in the command line of the temporary server's uvicorn
CHECK_EVERY_SECONDS = 0.5
STOP_GRACE_SECONDS = 5.0


def start_server_reaper() -> None:
    """Start the watcher of this process's temporary server, in its own session so it outlives a kill.

    Nothing starts when Prefect is given a server (`PREFECT_API_URL`, from the environment or the profile).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    subprocess.Popen(
        [sys.executable, "-m", "flows.server_reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def servers_of(command: psutil.Process) -> list[psutil.Process]:
    """The temporary server processes below `command`."""
    found = []
    for child in command.children(recursive=True):
        try:
            if any(SERVER_MARK in part for part in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def watch(command_pid: int) -> None:
    """Note `command_pid`'s servers while it lives; then stop those still running."""
    try:
        command = psutil.Process(command_pid)
    except psutil.NoSuchProcess:
        return
    servers: dict[int, psutil.Process] = {}
    while _alive(command):
        try:
            servers.update({server.pid: server for server in servers_of(command)})
        except psutil.NoSuchProcess:
            break
        time.sleep(CHECK_EVERY_SECONDS)
    alive = [server for server in servers.values() if server.is_running()]  # is_running checks the start time too
    for server in alive:
        server.terminate()
    _, still = psutil.wait_procs(alive, timeout=STOP_GRACE_SECONDS)
    for server in still:
        server.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


if __name__ == "__main__":
    watch(int(sys.argv[1]))
