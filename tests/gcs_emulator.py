"""gcp-storage-emulator as a real HTTP server on a free port, with an empty bucket per test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.servers import free_port

BUCKET = "colabflow-test"


@contextmanager
def gcs_emulator() -> Iterator[str]:
    """Start the emulator in memory with one bucket; yield its http://host:port."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
