"""Google Drive as a store (`gdrive://FOLDER_ID/PATH`), over the Drive v3 API.

A key is a POSIX path below the root folder: its leading segments are folders, found by name
and parent (and created on write), its last segment a file. Drive allows several files with one
name; colabflow never makes a second. A write looks the name up in its parent first, then does
nothing when the file's `appProperties` already name the same sha256, updates the file it found
in place, or creates one. The lookup is by name and parent only, on purpose: with the sha256 in
the query, a retried write of changed bytes (a manifest rewritten, a chunk compressed again at
another level) would miss the file already there and create a second one of the same name.
Creates always go through a resumable session: if the answer to a create is lost, httplib2
(under google-api-python-client) sends the request again by itself, and a resent multipart
create would store a second file, while a resent session start only opens a session never used.
A failed chunk resumes from what Drive confirmed, not from byte 0. After each upload the md5
Drive computed is checked. Shared drives work like My Drive.

Each file written below a location's job folder (`<PATH>/<job>/...`, and the checkpoints at
`<results>/<job>/.checkpoints`) carries its job in `appProperties`, so a Drive search finds a
job's files: `appProperties has { key='colabflow_job' and value='JOB' }`.

Google Docs, Sheets, Slides and the other `application/vnd.google-apps.*` files (folders aside)
hold no bytes to download: listing skips them with a warning, and `stat` and `open_read` treat
them as absent. Export them to regular files to use them as chunks.

Folder creation is serialised per (parent, name) inside a process. Two processes creating one
folder at the same moment can still make two, as can a folder create that httplib2 resends; every
lookup picks the oldest of equal names, the one right after a creation included, so writers
converge on one of them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from tasks.errors import CorruptOutputError, InvalidParameterError, MissingObjectError
from tasks.storage.drive_api import (
    GOOGLE_ENDPOINT,
    build_service,
    drive_credentials,
    translate_error,
)
from tasks.storage.locations import JOB_NAME_PATTERN
from tasks.storage.places import Place, split_container
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import ObjectInfo, StorageAccess, file_digests, join_key

try:
    from google.auth.credentials import Credentials
    from googleapiclient.http import HttpRequest, MediaIoBaseDownload, MediaIoBaseUpload
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError(f"gdrive:// needs google-api-python-client: pip install 'colabflow[drive]' ({missing})") from None

__all__ = ["DriveStore", "drive_credentials", "drive_place"]

T = TypeVar("T")
Entry = dict[str, Any]
Entries = list[Entry]
logger = logging.getLogger("colabflow.drive")

FOLDER = "application/vnd.google-apps.folder"
GOOGLE_APPS = "application/vnd.google-apps."
SHA256_PROPERTY = "colabflow_sha256"
JOB_PROPERTY = "colabflow_job"
CHECKPOINTS_FOLDER = ".checkpoints"  # tasks/engine/checkpoints.py keeps a job's batch results in this folder
OCTET_STREAM = "application/octet-stream"
ENTRY_FIELDS = "id,name,mimeType,size,md5Checksum,appProperties,createdTime"
UPLOAD_UNIT = 256 * 1024
DEFAULT_CHUNK = 16 * 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024
PAGE_SIZE = 1000


def drive_place(location: str, access: StorageAccess) -> Place:
    """`gdrive://FOLDER_ID/PATH` as a Place: the folder's store and PATH inside it."""
    folder_id, path = split_container(
        "gdrive", location, "gdrive://FOLDER_ID/PATH", "; FOLDER_ID is the last part of the folder's URL"
    )
    if not access.drive:
        return Place(store=DriveStore(folder_id, job_root=path), path=path)
    from blocks.drive import DriveFolder

    try:
        folder = cast(DriveFolder, DriveFolder.load(access.drive))
    except ValueError:
        raise InvalidParameterError(
            f"DriveFolder block {access.drive!r} was not found; create it in the Prefect UI (Blocks > Drive Folder) "
            "or drop --drive to use Application Default Credentials"
        ) from None
    return Place(store=folder.store(folder_id, job_root=path), path=path)


@dataclass(frozen=True)
class _Target:
    """Where a write goes and the digests of what it carries."""

    uri: str
    parent: str
    name: str
    sha256: str
    md5: str
    job: str | None

    def properties(self) -> dict[str, str]:
        found = {SHA256_PROPERTY: self.sha256}
        return found if self.job is None else {**found, JOB_PROPERTY: self.job}

    def held_by(self, entry: Entry | None) -> bool:
        if entry is None:
            return False
        known = entry.get("appProperties", {}).get(SHA256_PROPERTY)
        return bool(known == self.sha256 if known else entry.get("md5Checksum") == self.md5)


class DriveStore:
    """One Drive folder, in My Drive or a shared drive. Keys are paths below it.

    `job_root` is the path of the location the store serves (a destination's PATH): the folders
    right below it are job folders. None: the store records no job (a block's own result storage).
    """

    def __init__(self, folder_id: str, credentials: Credentials | None = None, *, endpoint: str = GOOGLE_ENDPOINT,
                 chunk_size: int = DEFAULT_CHUNK, policy: RetryPolicy = RetryPolicy(),
                 job_root: str | None = None) -> None:
        if chunk_size <= 0 or chunk_size % UPLOAD_UNIT:
            raise InvalidParameterError(f"Drive upload chunks must be a multiple of 256 KiB, got {chunk_size} bytes")
        self.folder_id = folder_id
        self.endpoint = endpoint.rstrip("/")
        self.chunk_size = chunk_size
        self.policy = policy
        self.job_root = job_root
        self._credentials = credentials
        self._local = threading.local()
        self._guard = threading.Lock()
        self._folders: dict[tuple[str, str], str] = {}
        self._folder_locks: dict[tuple[str, str], threading.Lock] = {}
        self._root_checked = False

    def __repr__(self) -> str:
        return f"DriveStore({self.location!r})"

    @property
    def location(self) -> str:
        return f"gdrive://{self.folder_id}"

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        start = self._root()
        if prefix.strip("/"):
            *folders, name = _segments(prefix)
            parent = self._folder(folders, create=False)
            entries = [] if parent is None else self._call(f"list {self.location}/{prefix}",
                                                           lambda: self._named(parent, name))
            folder = _pick(entries, folder=True, where=prefix)
            if folder is None:
                found = _pick(entries, folder=False, where=prefix)
                if found is not None:
                    yield _info(prefix.strip("/"), found)
                return
            start = folder["id"]
        yield from sorted(self._walk(start, prefix.strip("/")), key=lambda info: info.key)

    def stat(self, key: str) -> ObjectInfo | None:
        found = self._file(key)
        return None if found is None else _info(key, found)

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        found = self._file(key)
        if found is None:
            raise MissingObjectError(f"{self.location}/{key} does not exist")
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        try:
            request = self._files().get_media(fileId=found["id"], supportsAllDrives=True)
            downloader = MediaIoBaseDownload(spool, request, chunksize=self.chunk_size)
            done = False
            while not done:
                _, done = self._call(f"read {self.location}/{key}", downloader.next_chunk)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return cast(AbstractContextManager[BinaryIO], spool)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._write(key, io.BytesIO(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())

    def write_file(self, key: str, path: Path) -> None:
        sha256, md5 = file_digests(path)
        with path.open("rb") as stream:
            self._write(key, stream, sha256, md5)

    def _write(self, key: str, stream: BinaryIO, sha256: str, md5: str) -> None:
        *folders, name = _segments(key)
        parent = cast(str, self._folder(folders, create=True))
        target = _Target(f"{self.location}/{key}", parent, name, sha256, md5, _job_of(self.job_root, key))
        entries = self._call(f"stat {target.uri}", lambda: self._named(target.parent, target.name))
        existing = _pick(entries, folder=False, where=target.uri)
        if target.held_by(existing):
            return
        if existing is not None and stream.seek(0, io.SEEK_END) <= self.chunk_size:
            media = MediaIoBaseUpload(stream, OCTET_STREAM, resumable=False)
            written = self._call(f"write {target.uri}", self._upload_request(target, existing, media).execute)
        else:
            written = self._upload_in_session(target, existing, stream)
        if written.get("md5Checksum") != md5:
            raise CorruptOutputError(
                f"Drive reports md5 {written.get('md5Checksum')} for {target.uri} after upload, the local bytes have "
                f"{md5}; the file is damaged: rerun the job to write it again"
            )

    def _upload_in_session(self, target: _Target, existing: Entry | None, stream: BinaryIO) -> Entry:
        """A resumable upload: a failed chunk is sent again from the offset Drive confirms."""
        media = MediaIoBaseUpload(stream, OCTET_STREAM, chunksize=self.chunk_size, resumable=True)
        request = self._upload_request(target, existing, media)
        response: Entry | None = None
        while response is None:
            _, response = self._call(f"write {target.uri}", request.next_chunk)
        return response

    def _upload_request(self, target: _Target, existing: Entry | None, media: MediaIoBaseUpload) -> HttpRequest:
        body: Entry = {"appProperties": target.properties()}
        if existing is not None:
            return self._files().update(fileId=existing["id"], body=body, media_body=media, fields=ENTRY_FIELDS,
                                        supportsAllDrives=True)
        body.update(name=target.name, parents=[target.parent])
        return self._files().create(body=body, media_body=media, fields=ENTRY_FIELDS, supportsAllDrives=True)

    def _file(self, key: str) -> Entry | None:
        *folders, name = _segments(key)
        parent = self._folder(folders, create=False)
        if parent is None:
            return None
        return _pick(self._call(f"stat {self.location}/{key}", lambda: self._named(parent, name)),
                     folder=False, where=key)

    def _walk(self, folder_id: str, path: str) -> Iterator[ObjectInfo]:
        """Every binary file below a folder, page by page, depth first."""
        query, token = f"{_quote(folder_id)} in parents and trashed = false", None
        while True:
            page = self._call(f"list {self.location}/{path}", partial(self._list, query, token))
            for entry in page.get("files", []):
                key = join_key(path, entry["name"])
                if entry["mimeType"] == FOLDER:
                    yield from self._walk(entry["id"], key)
                elif not _is_google_file(entry, key):
                    yield _info(key, entry)
            token = page.get("nextPageToken")
            if not token:
                return

    def _folder(self, names: Sequence[str], create: bool) -> str | None:
        """The id of the folder at `names` below the root; None when absent and not created."""
        parent: str | None = self._root()
        for name in names:
            parent = self._child_folder(cast(str, parent), name, create)
            if parent is None:
                return None
        return parent

    def _child_folder(self, parent: str, name: str, create: bool) -> str | None:
        cached = self._folders.get((parent, name))
        if cached is not None:
            return cached
        with self._guard:
            lock = self._folder_locks.setdefault((parent, name), threading.Lock())
        with lock:
            if (parent, name) not in self._folders:
                what = f"{'create' if create else 'find'} folder {name!r} in {parent}"
                found = self._call(what, lambda: self._find_folder(parent, name, create))
                if found is None:
                    return None
                self._folders[(parent, name)] = found
            return self._folders[(parent, name)]

    def _find_folder(self, parent: str, name: str, create: bool) -> str | None:
        """Look the folder up, and create it when asked; a retry looks up again, so it never makes two."""
        found = _pick(self._named(parent, name), folder=True, where=name)
        if found is None and create:
            created = self._files().create(body={"name": name, "mimeType": FOLDER, "parents": [parent]}, fields="id",
                                           supportsAllDrives=True).execute()
            found = _pick(self._named(parent, name), folder=True, where=name) or created
        return None if found is None else str(found["id"])

    def _root(self) -> str:
        """The root folder's id, once checked to be a folder this account can see."""
        if not self._root_checked:
            try:
                root = self._call(f"open {self.location}", lambda: self._files().get(
                    fileId=self.folder_id, fields="id,mimeType,trashed", supportsAllDrives=True).execute())
            except MissingObjectError:
                raise MissingObjectError(
                    f"Drive folder {self.folder_id!r} was not found: check the id in {self.location}/... (the last part "
                    f"of the folder's URL) and share the folder with {self._account()}"
                ) from None
            if root.get("mimeType") != FOLDER or root.get("trashed"):
                raise InvalidParameterError(f"{self.location} is a file or a folder in the trash; name a folder's id")
            self._root_checked = True
        return self.folder_id

    def _named(self, parent: str, name: str) -> Entries:
        """Entries called `name` in `parent` that are not trashed (one request; callers retry)."""
        return cast(Entries, self._list(f"name = {_quote(name)} and {_quote(parent)} in parents "
                                            "and trashed = false", None).get("files", []))

    def _list(self, query: str, token: str | None) -> Entry:
        return cast(Entry, self._files().list(
            q=query, pageSize=PAGE_SIZE, pageToken=token, fields=f"nextPageToken,files({ENTRY_FIELDS})",
            supportsAllDrives=True, includeItemsFromAllDrives=True).execute())

    def _files(self) -> Any:
        """This thread's `files()` resource: httplib2 connections must not be shared between threads."""
        service = getattr(self._local, "service", None)
        if service is None:
            with self._guard:
                if self._credentials is None:
                    self._credentials = drive_credentials(None, self.endpoint)
            service = self._local.service = build_service(self._credentials, self.endpoint)
        return service.files()

    def _account(self) -> str:
        email = getattr(self._credentials, "service_account_email", None)
        return f"the service account {email}" if email else "the account colabflow uses"

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """Run one Drive request, retrying transient answers with backoff that honours Retry-After."""

        def once() -> T:
            try:
                return operation()
            except Exception as error:  # noqa: BLE001 - translated: raised as itself or a specific error
                raise translate_error(what, error, self._account(), self.location) from None

        return self.policy.run(once, logger)



def _segments(key: str) -> list[str]:
    parts = key.strip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidParameterError(f"Drive key {key!r} must be a relative path with no empty, '.' or '..' segment")
    return parts


def _job_of(job_root: str | None, key: str) -> str | None:
    """The job folder a key lies in: `<job_root>/<job>/...`, or the job of a checkpoint location.

    Checkpoints are a location of their own, `<results>/<job>/.checkpoints`, so there the job is
    the folder above it. A file right at `job_root` (the job ledger) or in a folder no job can be
    named (`.colabflow/`, where batch sizes are kept) belongs to no job.
    """
    if job_root is None:
        return None
    root, parts = [part for part in job_root.split("/") if part], _segments(key)
    if parts[:len(root)] != root:
        return None
    below = parts[len(root):]
    if len(root) >= 2 and root[-1] == CHECKPOINTS_FOLDER:
        job = root[-2]
    elif len(below) >= 2:
        job = below[0]
    else:
        return None
    return job if re.fullmatch(JOB_NAME_PATTERN, job) else None


def _quote(value: str) -> str:
    """A string literal for a Drive query."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pick(entries: Entries, folder: bool, where: str) -> Entry | None:
    """The oldest folder (or binary file) among entries of one name."""
    kept = [e for e in entries if (e["mimeType"] == FOLDER) == folder and (folder or not _is_google_file(e, where))]
    return min(kept, key=lambda entry: (entry.get("createdTime", ""), entry["id"]), default=None)


def _is_google_file(entry: Entry, where: str) -> bool:
    if not entry["mimeType"].startswith(GOOGLE_APPS):
        return False
    logger.warning("skipping %s: a Google Docs/Sheets/Slides file (%s) has no bytes to read; export it to a "
                   "regular file to use it", where, entry["mimeType"])
    return True


def _info(key: str, entry: Entry) -> ObjectInfo:
    return ObjectInfo(key=key, size=int(entry.get("size", 0)), md5=entry.get("md5Checksum"),
                      sha256=entry.get("appProperties", {}).get(SHA256_PROPERTY))
