"""What the map benchmark's flow and child process import: the functions it maps, and a slow GCS.

The flow loads a map function by its `module:name`, so the functions live in a module of their
own: a no-op, and two whose batch costs a fixed 20 ms of CPU: in Python, holding the interpreter
lock (`compute_20ms`), or in C that releases it (`kernel_20ms`), as a torch model's work does, so
reads on other threads can run meanwhile (the overlap case). That is CPU time of the calling
thread (`time.thread_time`), not `process_time`: another thread of the process (Prefect's
services, a prefetch) would otherwise shorten the work it is measured against.

`python -m benchmarks.map_functions --read-delay-ms 20` runs gcp-storage-emulator behind a proxy
that waits that long before each object read (a GET of `alt=media`), prints the proxy's URL and
serves until its stdin closes. It runs in a child process, as a real bucket runs elsewhere: in
the benchmark's process its request handling would take the interpreter lock from the compute.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.gcs_emulator import gcs_emulator

BATCH_CPU_SECONDS = 0.020
KERNEL_BUFFER = bytes(256 * 1024)


def item_sizes(batch: list[dict[str, Any]]) -> list[int]:
    """Each item's result: the size of its bytes (a file) or 0 (a record), so outputs show what was read."""
    return [len(item.get("bytes", b"")) for item in batch]


def noop(batch: list[dict[str, Any]]) -> list[int]:
    """A map function that does no work."""
    return item_sizes(batch)


def burn_cpu(seconds: float) -> None:
    """Spin until this thread has used `seconds` of CPU."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def compute_20ms(batch: list[dict[str, Any]]) -> list[int]:
    """A map function whose batch costs a fixed 20 ms of CPU, whatever its size."""
    burn_cpu(BATCH_CPU_SECONDS)
    return item_sizes(batch)


def run_kernel(seconds: float) -> None:
    """Use `seconds` of this thread's CPU in C code that releases the interpreter lock, as torch ops and
    GPU kernel launches do (sha256 over a 256 KiB buffer, about 0.3 ms a call)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        hashlib.sha256(KERNEL_BUFFER)


def kernel_20ms(batch: list[dict[str, Any]]) -> list[int]:
    """A map function whose batch costs 20 ms of CPU in work that leaves other threads free to run."""
    run_kernel(BATCH_CPU_SECONDS)
    return item_sizes(batch)


class SlowReadHandler(BaseHTTPRequestHandler):
    """Passes each request to the emulator and its answer back; an object read waits first."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a keep-alive answer sent in two writes would wait out a delayed ACK
    server: SlowReadServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.command == "GET" and "alt=media" in self.path:
            time.sleep(self.server.delay)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
        with self.server.upstream_lock:
            connection = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                status, answer, content = response.status, response.getheaders(), response.read()
            finally:
                connection.close()
        self.send_response(status)
        for name, value in answer:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay


class SlowReadServer(ThreadingHTTPServer):
    """A proxy in front of the emulator whose object reads take `delay` seconds longer.

    The waits overlap, as a remote bucket's do. The emulator answers one request at a time and
    queues only 5 connections, so more than 5 reads at once would lose connections and wait out
    a 1 s SYN retry; passing them on one at a time changes nothing else. The proxy's own queue is deep.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, upstream: str, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), SlowReadHandler)
        target = urlsplit(upstream)
        self.upstream_host, self.upstream_port = target.hostname or "127.0.0.1", target.port
        self.delay = delay
        self.upstream_lock = threading.Lock()


def serve_slow_gcs(delay: float) -> None:
    """Serve the emulator behind a `SlowReadServer`; print the proxy's URL; stop when stdin closes."""
    with gcs_emulator() as emulator:
        proxy = SlowReadServer(emulator, delay)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        print(f"http://127.0.0.1:{proxy.server_address[1]}", flush=True)
        sys.stdin.read()
        proxy.shutdown()
        proxy.server_close()


def main(argv: list[str] | None = None) -> None:
    """Parse the delay and serve."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--read-delay-ms", type=float, default=20.0, help="wait before each object read (default 20)")
    args = parser.parse_args(argv)
    serve_slow_gcs(args.read_delay_ms / 1000)


if __name__ == "__main__":
    main()
