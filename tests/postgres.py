"""A throwaway PostgreSQL server for a Prefect server's database, started by the tests themselves.

It runs Debian's `postgresql` binaries (`initdb`, `pg_ctl`) on a free loopback port, with its
data in a fresh temporary folder that is removed afterwards. PostgreSQL refuses to run as root,
so as root that folder belongs to the `postgres` user and every command runs through `runuser`
(pytest's own temporary folders are closed to other users); as any other user it runs as that
user. Authentication is `trust` on loopback only.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port

DATABASE = "prefect"
SERVICE_USER = "postgres"
INSTALL_HINT = "install Debian's PostgreSQL (`apt-get install postgresql`), as .ci/run does"


def postgres_bin() -> Path:
    """The folder of `initdb` and `pg_ctl`: on PATH, or Debian's newest /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if not versions:
        raise RuntimeError(f"no PostgreSQL server binaries (initdb) found: {INSTALL_HINT}")
    return versions[-1].parent


def _as_database_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_database_user(command), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}: {result.stdout}{result.stderr}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL; yield an asyncpg URL of an empty database; stop it and remove its data after."""
    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="colabflow-postgres-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, SERVICE_USER)
        shutil.chown(sockets, SERVICE_USER)
    user = SERVICE_USER if os.geteuid() == 0 else getpass.getuser()
    port = free_port()
    try:
        _run([str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "postgres.log"), "-o", options,
              "-w", "start"])
        try:
            _run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, DATABASE])
            yield f"postgresql+asyncpg://{user}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def psql(url: str, query: str) -> str:
    """Run one query with `psql` against the URL's database; its unaligned output."""
    credentials, location = url.split("://", 1)[1].split("@", 1)
    host_port, database = location.split("/", 1)
    host, port = host_port.split(":")
    result = subprocess.run([str(postgres_bin() / "psql"), "-h", host, "-p", port, "-U", credentials, "-d", database,
                             "-tAc", query], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"psql {query!r} exited with {result.returncode}: {result.stderr}")
    return result.stdout.strip()


def database_size_bytes(url: str) -> int:
    """`pg_database_size` of the URL's database."""
    return int(psql(url, f"select pg_database_size('{DATABASE}')"))
