"""A real `prefect server start` on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition, timeout: float, poll_interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_interval)
    raise TimeoutError(f"{what} not met within {timeout} s")


def holds_for(condition, duration: float, what: str, detail=lambda: "", poll_interval: float = 1.0) -> None:  # type: ignore[no-untyped-def]
    """Check `condition` every `poll_interval` seconds for `duration` seconds; fail the first time it is false.

    The duration is what a test asserts over (a state that must last), not a wait for something to happen.
    `detail` is called on failure, for the message.
    """
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not condition():
            raise AssertionError(f"{what} stopped holding after {duration - (deadline - time.monotonic()):.0f} s: {detail()}")
        time.sleep(poll_interval)


def server_environment(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment for a process that talks to (or is) a test server under `home`."""
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    return env


@contextmanager
def prefect_server(home: Path, timeout: float = 180.0, database_url: str | None = None) -> Iterator[str]:
    """Start a real Prefect server; yield its API URL; stop it after.

    Its database is SQLite under `home`, or the one `database_url` names (PostgreSQL: tests/postgres.py).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (home / "server.log").open("wb")
    env = server_environment(home)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}; see {home / 'server.log'}")
        try:
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout, poll_interval=0.25, what="prefect server health")
        yield api_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
