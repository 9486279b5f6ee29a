"""A fake Google Drive v3 server on a loopback port: real HTTP, the documented protocol, faults on demand.

It answers what google-api-python-client sends, unmodified: files.list (with the `q` subset
colabflow uses, paging and `fields`), files.get (metadata, and `alt=media` with Range),
files.create and files.update (metadata only, multipart, and resumable sessions with 308 and
status queries), plus a token endpoint for service-account credentials. Every request is
recorded (with its query and arrival time), and a test can make the next requests fail: an HTTP
error with a Drive error body, a connection reset part-way through the request body, or a request
carried out in full whose answer is lost (the connection closes before it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FOLDER = "application/vnd.google-apps.folder"
DOCUMENT = "application/vnd.google-apps.document"
UPLOAD_UNIT = 256 * 1024
MASK_TOKEN = re.compile(r"[\w*]+|[(),]")
QUERY_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|!=|[={}]|\w+")


@dataclass
class DriveFile:
    """One file or folder the fake holds."""

    id: str
    name: str
    mime_type: str
    parents: list[str]
    content: bytes | None
    app_properties: dict[str, str]
    created_time: str
    trashed: bool = False

    def resource(self, wrong_md5: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": "drive#file", "id": self.id, "name": self.name, "mimeType": self.mime_type,
            "parents": self.parents, "trashed": self.trashed, "createdTime": self.created_time,
        }
        if self.app_properties:
            entry["appProperties"] = dict(self.app_properties)
        if self.content is not None:
            entry["size"] = str(len(self.content))
            entry["md5Checksum"] = "0" * 32 if wrong_md5 else hashlib.md5(self.content).hexdigest()
        return entry


@dataclass(frozen=True)
class Recorded:
    """One request as the fake saw it (headers lower-cased; `at` is time.monotonic() on arrival)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body_length: int
    at: float


@dataclass
class Fault:
    """Make the next `times` requests that match (after `skip` matching ones pass) fail."""

    method: str
    path: str
    times: int
    skip: int = 0
    status: int = 0
    reason: str = ""
    retry_after: str | None = None
    drop_after: int | None = None
    lose_response: bool = False
    reset: bool = False


@dataclass
class Session:
    """A resumable upload in progress."""

    metadata: dict[str, Any]
    file_id: str | None
    fields: str | None
    total: int | None
    received: bytearray = field(default_factory=bytearray)
    result: DriveFile | None = None


class FakeDrive:
    """The state behind the server: files, upload sessions, recorded requests and pending faults.

    `busy` counts the requests being handled right now, so a test can wait until a killed
    client's last request has been carried out before it counts what the fake holds.
    """

    def __init__(self, max_page_size: int = 1000) -> None:
        self.files: dict[str, DriveFile] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.sessions: dict[str, Session] = {}
        self.max_page_size = max_page_size
        self.wrong_md5 = 0
        self.busy = 0
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.endpoint = ""
        self.root = self.add_folder("root", parent="")

    def new_id(self) -> str:
        return f"id{next(self._ids):05d}"

    def add(self, name: str, parent: str, mime_type: str, content: bytes | None,
            app_properties: dict[str, str] | None = None) -> str:
        """Store a file; return its id."""
        with self.lock:
            file_id = self.new_id()
            created = f"2024-01-01T00:00:00.{int(file_id[2:]):06d}Z"
            self.files[file_id] = DriveFile(file_id, name, mime_type, [parent] if parent else [], content,
                                            dict(app_properties or {}), created)
            return file_id

    def add_folder(self, name: str, parent: str) -> str:
        return self.add(name, parent, FOLDER, None)

    def add_file(self, name: str, parent: str, content: bytes) -> str:
        return self.add(name, parent, "application/octet-stream", content)

    def add_document(self, name: str, parent: str) -> str:
        """A Google Docs file: listed, with no binary content."""
        return self.add(name, parent, DOCUMENT, None)

    def children(self, parent: str, name: str) -> list[DriveFile]:
        """Files (not trashed) named `name` in `parent`."""
        with self.lock:
            return [f for f in self.files.values() if parent in f.parents and f.name == name and not f.trashed]

    def file_at(self, path: str) -> DriveFile:
        """The one file at a slash-separated path below the root folder."""
        parent = self.root
        for name in path.split("/"):
            found = self.children(parent, name)
            assert len(found) == 1, f"{len(found)} entries named {name!r} under {parent}"
            parent = found[0].id
        return self.files[parent]

    def fail(self, method: str, path: str, status: int, *, reason: str = "", retry_after: str | None = None,
             times: int = 1, skip: int = 0) -> None:
        """Answer the next `times` matching requests with `status` and a Drive error body."""
        with self.lock:
            self.faults.append(Fault(method, path, times, skip, status, reason, retry_after))

    def drop(self, method: str, path: str, *, after: int, times: int = 1, skip: int = 0) -> None:
        """Reset the connection of the next matching requests once `after` body bytes have arrived."""
        with self.lock:
            self.faults.append(Fault(method, path, times, skip, drop_after=after))

    def lose_response(self, method: str, path: str, *, reset: bool = False, times: int = 1, skip: int = 0) -> None:
        """Carry out the next matching requests in full, then close the connection before answering.

        A plain close looks to the client like a stale connection (httplib2 resends the request by
        itself); `reset` sends a TCP reset instead, which reaches the caller as an error.
        """
        with self.lock:
            self.faults.append(Fault(method, path, times, skip, lose_response=True, reset=reset))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times and fault.method == method and path.startswith(fault.path):
                    if fault.skip:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    return fault
            return None

    def made(self, method: str, path: str = "", **query: str) -> list[Recorded]:
        """Recorded requests with this method, path prefix and query values."""
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path)
                    and all(r.query.get(k) == v for k, v in query.items())]

    # ---- Drive semantics -------------------------------------------------------------------

    def list_files(self, query: dict[str, str]) -> dict[str, Any]:
        matches = parse_query(query.get("q", ""))
        with self.lock:
            found = [f for f in reversed(self.files.values()) if f.parents and matches(f)]
        size = min(int(query.get("pageSize", 100)), self.max_page_size)
        start = int(query.get("pageToken", "0"))
        page = found[start:start + size]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                                "files": [f.resource() for f in page]}
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        default = "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)"
        return select(body, parse_mask(query.get("fields") or default))

    def finish_upload(self, metadata: dict[str, Any], file_id: str | None, content: bytes) -> DriveFile:
        """Create or update a file from an upload."""
        with self.lock:
            if file_id is None:
                file_id = self.add(metadata.get("name", "Untitled"), (metadata.get("parents") or [""])[0],
                                   metadata.get("mimeType", "application/octet-stream"), content)
            target = self.files[file_id]
            target.content = content
            target.app_properties.update(metadata.get("appProperties", {}))
            return target

    def render(self, drive_file: DriveFile, fields: str | None) -> dict[str, Any]:
        with self.lock:
            wrong = self.wrong_md5 > 0 and drive_file.content is not None
            self.wrong_md5 -= wrong
        return select(drive_file.resource(wrong_md5=wrong), parse_mask(fields or "kind,id,name,mimeType"))


def parse_query(text: str) -> Any:
    """A predicate over DriveFile for the `q` subset: clauses joined by `and`."""
    tokens = QUERY_TOKEN.findall(text)
    clauses: list[Any] = []
    index = 0

    def literal(token: str) -> str:
        assert token.startswith("'"), f"expected a quoted string in q={text!r}, got {token!r}"
        return re.sub(r"\\(.)", r"\1", token[1:-1])

    while index < len(tokens):
        head = tokens[index]
        if head == "appProperties":
            _, _, _, _, key, _, _, _, value, _ = tokens[index + 1:index + 11]
            pair = (literal(key), literal(value))
            clauses.append(lambda f, pair=pair: f.app_properties.get(pair[0]) == pair[1])
            index += 11
        elif head.startswith("'"):
            assert tokens[index + 1:index + 3] == ["in", "parents"], f"unsupported q={text!r}"
            parent = literal(head)
            clauses.append(lambda f, parent=parent: parent in f.parents)
            index += 3
        else:
            operator, value = tokens[index + 1], tokens[index + 2]
            expected: object = value == "true" if head == "trashed" else literal(value)
            attribute = {"name": "name", "mimeType": "mime_type", "trashed": "trashed"}[head]
            equal = operator == "="
            clauses.append(lambda f, a=attribute, e=expected, eq=equal: (getattr(f, a) == e) == eq)
            index += 3
        if index < len(tokens):
            assert tokens[index] == "and", f"unsupported q={text!r}"
            index += 1
    return lambda drive_file: all(clause(drive_file) for clause in clauses)


def parse_mask(text: str) -> dict[str, Any]:
    """A `fields` mask ("nextPageToken,files(id,name)") as a tree; None marks a whole value."""
    tokens = MASK_TOKEN.findall(text)
    position = 0

    def level() -> dict[str, Any]:
        nonlocal position
        tree: dict[str, Any] = {}
        while position < len(tokens) and tokens[position] != ")":
            name, position = tokens[position], position + 1
            if name == ",":
                continue
            tree[name] = None
            if position < len(tokens) and tokens[position] == "(":
                position += 1
                tree[name] = level()
                position += 1
        return tree

    return level()


def select(value: Any, mask: dict[str, Any] | None) -> Any:
    if mask is None or "*" in mask:
        return value
    if isinstance(value, list):
        return [select(item, mask) for item in value]
    return {key: select(value[key], sub) for key, sub in mask.items() if key in value}


def error_body(status: int, reason: str, message: str = "") -> bytes:
    reason = reason or {401: "authError", 403: "forbidden", 404: "notFound", 429: "rateLimitExceeded"}.get(
        status, "backendError")
    message = message or f"fake drive: {reason}"
    return json.dumps({"error": {"code": status, "message": message,
                                 "errors": [{"domain": "global", "reason": reason, "message": message}]}}).encode()


def multipart_parts(body: bytes, content_type: str) -> tuple[dict[str, Any], bytes]:
    """The metadata and the media of a multipart/related upload body."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    assert boundary, content_type
    delimiter = b"\n--" + boundary.group(1).encode()
    _, metadata, media, _ = (b"\n" + body).split(delimiter)
    return (json.loads(metadata.split(b"\n\n", 1)[1] or b"{}"), media.split(b"\n\n", 1)[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    answer_lost = False
    arrived = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakeDrive.requests` instead."""

    def do_GET(self) -> None:
        with self.server.drive.lock:
            self.server.drive.busy += 1
        try:
            self._dispatch()
        finally:
            with self.server.drive.lock:
                self.server.drive.busy -= 1

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        drive = self.server.drive
        self.arrived = time.monotonic()
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        fault = drive.take_fault(self.command, parts.path)
        if fault is not None and fault.drop_after is not None:
            self.rfile.read(min(fault.drop_after, length))
            self._record(parts.path, query, min(fault.drop_after, length))
            self._reset()
            return
        body = self.rfile.read(length) if length else b""
        self._record(parts.path, query, len(body))
        if fault is not None and fault.lose_response:
            self.answer_lost = True
            self._route(parts.path, query, body)
            if fault.reset:
                self._reset()
            self.close_connection = True
            return
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(fault.status, error_body(fault.status, fault.reason), headers)
            return
        try:
            self._route(parts.path, query, body)
        except (AssertionError, KeyError, ValueError) as error:  # a request this fake (or Drive) cannot serve
            self._send(400, error_body(400, "badRequest", f"fake drive cannot serve this: {error!r}"))

    def _reset(self) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0), not a FIN."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _record(self, path: str, query: dict[str, str], body_length: int) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.server.drive.lock:
            self.server.drive.requests.append(Recorded(self.command, path, query, headers, body_length, self.arrived))

    def _route(self, path: str, query: dict[str, str], body: bytes) -> None:
        drive = self.server.drive
        file_match = re.fullmatch(r"/(upload/)?drive/v3/files(?:/([^/]+))?", path)
        if path == "/token" and self.command == "POST":
            self._json(200, {"access_token": "fake-access-token", "token_type": "Bearer", "expires_in": 3600})
        elif file_match is None:
            self._send(404, error_body(404, "notFound"))
        elif file_match.group(1) and "upload_id" in query:
            self._chunk(query["upload_id"], body)
        elif file_match.group(1):
            self._upload(file_match.group(2), query, body)
        elif file_match.group(2) is None and self.command == "GET":
            self._json(200, drive.list_files(query))
        elif file_match.group(2) is None and self.command == "POST":
            metadata = json.loads(body or b"{}")
            created = drive.add(metadata["name"], metadata["parents"][0], metadata["mimeType"], None,
                                metadata.get("appProperties"))
            self._json(200, drive.render(drive.files[created], query.get("fields")))
        else:
            self._file(file_match.group(2), query, body)

    def _file(self, file_id: str, query: dict[str, str], body: bytes) -> None:
        drive = self.server.drive
        found = drive.files.get(file_id)
        if found is None:
            self._send(404, error_body(404, "notFound"))
        elif self.command == "DELETE":
            with drive.lock:
                del drive.files[file_id]
            self._send(204, b"")
        elif self.command == "PATCH":
            found.app_properties.update(json.loads(body or b"{}").get("appProperties", {}))
            self._json(200, drive.render(found, query.get("fields")))
        elif query.get("alt") != "media":
            self._json(200, drive.render(found, query.get("fields")))
        elif found.content is None:
            self._send(403, error_body(403, "fileNotDownloadable"))
        else:
            self._media(found.content)

    def _media(self, content: bytes) -> None:
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted is None:
            self._send(200, content, {"Content-Type": "application/octet-stream"})
            return
        start = int(wanted.group(1))
        end = min(int(wanted.group(2) or len(content) - 1), len(content) - 1)
        if start >= len(content):
            self._send(416, b"", {"Content-Range": f"bytes */{len(content)}"})
            return
        self._send(206, content[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(content)}"})

    def _upload(self, file_id: str | None, query: dict[str, str], body: bytes) -> None:
        drive = self.server.drive
        if file_id is not None and file_id not in drive.files:
            self._send(404, error_body(404, "notFound"))
            return
        kind = query.get("uploadType")
        if kind == "resumable":
            total = self.headers.get("X-Upload-Content-Length")
            session_id = f"session-{drive.new_id()}"
            drive.sessions[session_id] = Session(json.loads(body or b"{}"), file_id, query.get("fields"),
                                                 int(total) if total else None)
            location = f"{drive.endpoint}{urlsplit(self.path).path}?uploadType=resumable&upload_id={session_id}"
            self._send(200, b"", {"Location": location})
            return
        if kind == "multipart":
            metadata, content = multipart_parts(body, self.headers.get("Content-Type", ""))
        else:
            metadata, content = {}, body
        self._json(200, drive.render(drive.finish_upload(metadata, file_id, content), query.get("fields")))

    def _chunk(self, session_id: str, body: bytes) -> None:
        drive = self.server.drive
        session = drive.sessions.get(session_id)
        if session is None:
            self._send(404, error_body(404, "notFound"))
            return
        content_range = self.headers.get("Content-Range", "")
        status = re.fullmatch(r"bytes \*/(\d+|\*)", content_range)
        chunk = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range)
        if chunk is not None:
            start, total = int(chunk.group(1)), chunk.group(3)
            if start > len(session.received):
                self._send(400, error_body(400, "badContent"))
                return
            session.received[start:] = body
            session.total = None if total == "*" else int(total)
            if len(body) % UPLOAD_UNIT and len(session.received) != session.total:
                self._send(400, error_body(400, "badContent"))
                return
        elif status is None:
            session.received[:] = body
            session.total = len(body)
        if session.result is None and session.total is not None and len(session.received) >= session.total:
            session.result = drive.finish_upload(session.metadata, session.file_id, bytes(session.received))
        if session.result is not None:
            self._json(200, drive.render(session.result, session.fields))
            return
        headers = {"Range": f"bytes=0-{len(session.received) - 1}"} if session.received else {}
        self._send(308, b"", headers)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json; charset=UTF-8"})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        if self.answer_lost:
            return
        self.send_response(status)
        if status >= 400:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    drive: FakeDrive


@contextmanager
def fake_drive(max_page_size: int = 1000) -> Iterator[FakeDrive]:
    """Serve a fresh FakeDrive on a free loopback port; its `endpoint` is the API root URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.drive = FakeDrive(max_page_size)
    server.drive.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-drive", daemon=True)
    thread.start()
    try:
        yield server.drive
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
