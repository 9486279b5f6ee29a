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

Folders are found and created by `tasks/storage/drive_folders.py`, and every request runs through
`tasks/storage/drive_requests.py`.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, cast

from tasks.errors import CorruptOutputError, InvalidParameterError, MissingObjectError
from tasks.storage.drive_api import GOOGLE_ENDPOINT
from tasks.storage.drive_folders import (
    FOLDER,
    DriveFolders,
    is_google_file,
    pick_entry,
    split_key,
)
from tasks.storage.drive_requests import (
    ENTRY_FIELDS,
    DriveRequests,
    Entries,
    Entry,
    quote_literal,
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

__all__ = ["DriveStore", "drive_place"]

SHA256_PROPERTY = "colabflow_sha256"
JOB_PROPERTY = "colabflow_job"
CHECKPOINTS_FOLDER = ".checkpoints"  # tasks/engine/checkpoints.py keeps a job's batch results in this folder
OCTET_STREAM = "application/octet-stream"
UPLOAD_UNIT = 256 * 1024
DEFAULT_CHUNK = 16 * 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024


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
        self._requests = DriveRequests(self.location, credentials, self.endpoint, policy)
        self._folders = DriveFolders(self._requests, folder_id)

    def __repr__(self) -> str:
        return f"DriveStore({self.location!r})"

    @property
    def location(self) -> str:
        return f"gdrive://{self.folder_id}"

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        start = self._folders.root()
        if prefix.strip("/"):
            *folders, name = split_key(prefix)
            parent = self._folders.resolve(folders, create=False)
            entries = [] if parent is None else self._named(f"list {self.location}/{prefix}", parent, name)
            folder = pick_entry(entries, folder=True, where=prefix)
            if folder is None:
                found = pick_entry(entries, folder=False, where=prefix)
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
            request = self._requests.files().get_media(fileId=found["id"], supportsAllDrives=True)
            downloader = MediaIoBaseDownload(spool, request, chunksize=self.chunk_size)
            done = False
            while not done:
                _, done = self._requests.call(f"read {self.location}/{key}", downloader.next_chunk)
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
        *folders, name = split_key(key)
        parent = cast(str, self._folders.resolve(folders, create=True))
        target = _Target(f"{self.location}/{key}", parent, name, sha256, md5, _job_of(self.job_root, key))
        existing = pick_entry(self._named(f"stat {target.uri}", parent, name), folder=False, where=target.uri)
        if target.held_by(existing):
            return
        if existing is not None and stream.seek(0, io.SEEK_END) <= self.chunk_size:
            media = MediaIoBaseUpload(stream, OCTET_STREAM, resumable=False)
            written = self._requests.call(f"write {target.uri}",
                                          self._upload_request(target, existing, media).execute)
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
            _, response = self._requests.call(f"write {target.uri}", request.next_chunk)
        return response

    def _upload_request(self, target: _Target, existing: Entry | None, media: MediaIoBaseUpload) -> HttpRequest:
        body: Entry = {"appProperties": target.properties()}
        if existing is not None:
            return self._requests.files().update(fileId=existing["id"], body=body, media_body=media,
                                                 fields=ENTRY_FIELDS, supportsAllDrives=True)
        body.update(name=target.name, parents=[target.parent])
        return self._requests.files().create(body=body, media_body=media, fields=ENTRY_FIELDS,
                                             supportsAllDrives=True)

    def delete(self, key: str) -> None:
        """Remove the file for good (not to the trash, which still counts against the quota)."""
        entry = self._file(key)
        if entry is None:
            return
        request = self._requests.files().delete(fileId=entry["id"], supportsAllDrives=True)
        self._requests.call(f"delete {self.location}/{key}", request.execute)

    def _file(self, key: str) -> Entry | None:
        *folders, name = split_key(key)
        parent = self._folders.resolve(folders, create=False)
        if parent is None:
            return None
        return pick_entry(self._named(f"stat {self.location}/{key}", parent, name), folder=False, where=key)

    def _named(self, what: str, parent: str, name: str) -> Entries:
        """Entries called `name` in `parent`, the request retried."""
        return self._requests.call(what, lambda: self._requests.named(parent, name))

    def _walk(self, folder_id: str, path: str) -> Iterator[ObjectInfo]:
        """Every binary file below a folder, page by page, depth first."""
        query, token = f"{quote_literal(folder_id)} in parents and trashed = false", None
        while True:
            page = self._requests.call(f"list {self.location}/{path}",
                                       partial(self._requests.list_page, query, token))
            for entry in page.get("files", []):
                key = join_key(path, entry["name"])
                if entry["mimeType"] == FOLDER:
                    yield from self._walk(entry["id"], key)
                elif not is_google_file(entry, key):
                    yield _info(key, entry)
            token = page.get("nextPageToken")
            if not token:
                return


def _job_of(job_root: str | None, key: str) -> str | None:
    """The job folder a key lies in: `<job_root>/<job>/...`, or the job of a checkpoint location.

    Checkpoints are a location of their own, `<results>/<job>/.checkpoints`, so there the job is
    the folder above it. A file right at `job_root` (the job ledger) or in a folder no job can be
    named (`.colabflow/`, where batch sizes are kept) belongs to no job.
    """
    if job_root is None:
        return None
    root, parts = [part for part in job_root.split("/") if part], split_key(key)
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


def _info(key: str, entry: Entry) -> ObjectInfo:
    return ObjectInfo(key=key, size=int(entry.get("size", 0)), md5=entry.get("md5Checksum"),
                      sha256=entry.get("appProperties", {}).get(SHA256_PROPERTY))
