"""A GCS server for tests that enforces request preconditions the way GCS documents them.

gcp-storage-emulator serves the JSON API over real HTTP but ignores `ifGenerationMatch` and the
other preconditions. This server keeps the emulator's handlers and storage, and before each
request runs, under one lock (so concurrent clients see exactly one winner per generation), it
checks what GCS checks:

- on uploads (simple media, multipart, and resumable: when the session starts and again on each
  of its requests, so an upload whose object changed meanwhile is refused at its end), object
  reads (metadata and media), deletes and metadata patches;
- `ifGenerationMatch`, `ifGenerationNotMatch`, `ifMetagenerationMatch`, `ifMetagenerationNotMatch`.
  With no live object only `ifGenerationMatch=0` holds ("only if there is none"): every other
  condition fails, `ifGenerationNotMatch=0` among them ("only if there is one");
- a condition that fails answers 412 with GCS's `conditionNotMet` error body (a `...NotMatch` on a
  GET answers 304 Not Modified, as HTTP's If-None-Match does);
- every write gets a generation larger than any before it, with metageneration 1 (the emulator
  takes the time a resumable upload starts, which can be older than a write that ends first), and
  a `mediaLink` that names it, with the object name escaped as GCS does;
- a read or delete that names a `generation` other than the live one is a 404: like a bucket
  without object versioning, the fake keeps no older generation.

Copy, rewrite, compose and batch requests pass through unchecked: colabflow sends none.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import buckets
from gcp_storage_emulator.server import (
    GET,
    Request,
    RequestHandler,
    Router,
    _read_raw_data,
)
from gcp_storage_emulator.storage import Storage

BUCKET = "colabflow-test"
OBJECT_PATH = re.compile(r"(?:/download)?/storage/v1/b/(?P<bucket>[-.\w]+)/o/(?P<name>[^/]+)")
UPLOAD_PATH = re.compile(r"/upload/storage/v1/b/(?P<bucket>[-.\w]+)/o")
CONDITIONS = ("ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch")
NOT_MET = "At least one of the pre-conditions you specified did not hold."
Answer = tuple[int, bytes]


def error_body(status: int, reason: str, message: str, **location: str) -> bytes:
    """GCS's JSON error body."""
    detail = {"message": message, "domain": "global", "reason": reason, **location}
    return json.dumps({"error": {"code": status, "message": message, "errors": [detail]}}).encode()


PRECONDITION_FAILED: Answer = (
    412, error_body(412, "conditionNotMet", NOT_MET, locationType="header", location="If-Match"))


class GenerationStorage(Storage):  # type: ignore[misc]
    """The emulator's in-memory storage, where each write gets a larger generation than any before."""

    def __init__(self) -> None:
        super().__init__(use_memory_fs=True)
        self.last_generation = 0

    def create_file(self, bucket_name: str, file_name: str, content: bytes, file_obj: dict[str, Any],
                    file_id: str | None = None) -> None:
        generation = self.last_generation = max(time.time_ns(), self.last_generation + 1)
        host = file_obj["mediaLink"].split("/download/", 1)[0]
        file_obj.update(
            generation=str(generation), metageneration="1", id=f"{bucket_name}/{file_name}/{generation}",
            mediaLink=f"{host}/download/storage/v1/b/{bucket_name}/o/{quote(file_name, safe='')}"
            f"?generation={generation}&alt=media",
        )
        super().create_file(bucket_name, file_name, content, file_obj, file_id)


def refusal(live: dict[str, Any] | None, query: dict[str, list[str]], read: bool) -> Answer | None:
    """The answer to a request whose preconditions `live` (the object, None when absent) fails; None when it passes."""
    for condition in CONDITIONS:
        if condition not in query:
            continue
        try:
            wanted = int(query[condition][0])
        except ValueError:
            return 400, error_body(400, "invalid", f"Invalid value for {condition}: {query[condition][0]!r}")
        negated = condition.endswith("NotMatch")
        if live is None:
            met = condition == "ifGenerationMatch" and wanted == 0
        else:
            current = int(live["metageneration" if "Metageneration" in condition else "generation"])
            met = current != wanted if negated else current == wanted
        if not met:
            return (304, b"") if read and negated else PRECONDITION_FAILED
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: Any) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()


class _Handler(RequestHandler):  # type: ignore[misc]
    """The emulator's request handler, behind the precondition check."""

    server: _Server
    storage: GenerationStorage

    def _guarded(self) -> None:
        body = _read_raw_data(self) or b""
        del self.headers["Transfer-Encoding"], self.headers["Content-Length"]
        self.headers["Content-Length"] = str(len(body))
        with self.server.lock:
            self.rfile = io.BytesIO(body)
            answer = self._check(Request(self, self.command))
            if answer is not None:
                self._answer(*answer)
                return
            self.rfile = io.BytesIO(body)
            Router(self).handle(self.command)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _guarded

    def _check(self, request: Request) -> Answer | None:
        target = self._target(request)
        if target is None:
            return None
        bucket, name, upload = target
        try:
            live = self.storage.get_file_obj(bucket, name)
        except NotFound:
            live = None
        if live is None and not upload:
            return None  # the emulator answers 404
        named = request.query.get("generation")
        if not upload and named and named[0] != live["generation"]:
            return 404, error_body(404, "notFound", f"No such object: {bucket}/{name}#{named[0]}")
        return refusal(live, request.query, read=request.method == GET)

    def _target(self, request: Request) -> tuple[str, str, bool] | None:
        """(bucket, object name, whether it is an upload) of an object request; None for any other."""
        found = OBJECT_PATH.fullmatch(request.path)
        if found:
            return found["bucket"], unquote(found["name"]), False
        found = UPLOAD_PATH.fullmatch(request.path)
        if found is None or request.method == GET:
            return None
        if "upload_id" in request.query:
            try:
                session = self.storage.get_resumable_file_obj(request.query["upload_id"][0])
            except NotFound:
                return None  # the emulator answers 404
            return session["bucket"], session["name"], True
        data = request.data if isinstance(request.data, dict) else {}
        name = request.query.get("name", [None])[0] or data.get("meta", data).get("name")
        return None if name is None else (found["bucket"], name, True)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def gcs_fake() -> Iterator[str]:
    """Serve a fresh fake with one empty bucket, `BUCKET`, on a free loopback port; yield its http://host:port."""
    storage = GenerationStorage()
    buckets.create_bucket(BUCKET, storage)
    server = _Server(partial(_Handler, storage))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="gcs-fake", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
