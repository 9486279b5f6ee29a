"""A reverse proxy that passes HTTP requests to a real upstream, except the faults a test queues.

Tests point a client at the proxy and queue faults by method and path: an answer (429 with
Retry-After, 503, 401, 403, 404, 412), a connection dropped before the answer, or one dropped in
the middle of the upstream's answer. Everything else reaches the upstream server unchanged, and
every request is recorded with its arrival time, so a test can check the waits a client kept.

A `Hold` keeps a chosen request unanswered until the test releases it: a gate that a job reaches
at a point the test picked, so a kill or a drain lands there whatever the machine's speed.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Fault:
    """Answer `status` (or drop the connection when status is None) to matching requests.

    With `cut_body_at` set, the request goes upstream instead, and the client gets the upstream's
    status and headers (the full Content-Length) but only that many body bytes before the
    connection closes. The first `skip` matching requests pass through; the next `times` get the fault.
    """

    method: str
    path_pattern: str
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    times: int = 1
    skip: int = 0
    cut_body_at: int | None = None


@dataclass
class Hold:
    """Keep matching requests waiting, unanswered, until `release()`; then they go upstream as usual.

    The first `skip` matching requests pass without waiting. `reached` is set when one is held.
    The proxy releases every hold when it stops, so no handler thread outlives the test.
    """

    method: str
    path_pattern: str
    skip: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass(frozen=True)
class Recorded:
    """One request the proxy saw; header names are lower case, `arrived` is time.monotonic()."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int
    faulted: bool
    arrived: float


class FaultProxy:
    """Forwards to `upstream` (http://host:port) with queued faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: without it each answer waits 40 ms

            def log_message(self, format: str, *args: object) -> None:
                return

            def _handle(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                held = proxy.take_hold(self.command, self.path)
                if held is not None:
                    held.reached.set()
                    held.released.wait()
                fault = proxy.take_fault(self.command, self.path)
                proxy.record(Recorded(self.command, self.path, {name.lower(): value for name, value in self.headers.items()},
                                      len(body), fault is not None, arrived))
                if fault is not None and fault.status is None and fault.cut_body_at is None:
                    self._drop()
                elif fault is not None and fault.status is not None:
                    self._answer(fault.status, list({"Content-Type": "application/json", **fault.headers}.items()),
                                 fault.body)
                else:
                    status, headers, content = proxy.forward(self.command, self.path, dict(self.headers), body)
                    self._answer(status, headers, content, fault.cut_body_at if fault else None)

            def _answer(self, status: int, headers: list[tuple[str, str]], content: bytes, cut_at: int | None = None) -> None:
                """Send the answer; with `cut_at`, only that much of its body before dropping the connection."""
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content if cut_at is None else content[:cut_at])
                if cut_at is not None:
                    self.wfile.flush()
                    self._drop()

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.shutdown(2)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def hold(self, hold: Hold) -> Hold:
        with self.lock:
            self.holds.append(hold)
        return hold

    def take_hold(self, method: str, path: str) -> Hold | None:
        """The unreleased hold this request must wait at, if any (counting down its `skip` first)."""
        with self.lock:
            for hold in self.holds:
                if hold.method == method and re.search(hold.path_pattern, path) and not hold.released.is_set():
                    if hold.skip > 0:
                        hold.skip -= 1
                        return None
                    return hold
        return None

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and re.search(fault.path_pattern, path) and fault.times > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    return fault
        return None

    def record(self, request: Recorded) -> None:
        with self.lock:
            self.requests.append(request)

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            headers = {name: value for name, value in headers.items() if name.lower() != "host"}
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            content = response.read()
            location = self.url + response.getheader("Location", "").split(self.upstream.netloc, 1)[-1]
            answer = [(name, location if name.lower() == "location" else value) for name, value in response.getheaders()]
            return response.status, answer, content
        finally:
            connection.close()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Run a FaultProxy in a thread for the duration of the block."""
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        for hold in proxy.holds:
            hold.release()
        proxy.server.shutdown()
        proxy.server.server_close()
