"""A job's folder, `<destination>/<job>/`, resolved once: its store, its keys and its job-level files.

A destination is a location (a local directory, `gs://BUCKET/PATH` or `gdrive://FOLDER_ID/PATH`)
resolved to an object store. Every stage of every kind receives the same `JobFolder` (stores
are cached per process), instead of opening and normalising the destination again. Every write
is atomic and idempotent on every backend: a reader never sees half an object, and writing the
same bytes twice changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from tasks.engine.models import JobSettings
from tasks.errors import InvalidParameterError
from tasks.storage.local import remove_stale_temporaries
from tasks.storage.locations import LOCAL_SCHEMES, local_path, scheme_of
from tasks.storage.places import WRITABLE_SCHEMES, open_place
from tasks.storage.stores import (
    ObjectStore,
    StorageAccess,
    join_key,
    make_durable,
    read_optional,
)

MANIFEST_NAME = "manifest.jsonl"
WRITE_CHECK_NAME = ".colabflow-write-check"
DESTINATION_SCHEMES = WRITABLE_SCHEMES


@dataclass(frozen=True)
class JobFolder:
    """`<destination>/<job>/` on its store; keys are POSIX paths below the store's root."""

    destination: str
    job: str
    store: ObjectStore
    path: str

    @property
    def location(self) -> str:
        """The folder's URI (or absolute path), for messages and reports."""
        return self.uri(self.path)

    def key(self, *parts: str) -> str:
        """The store key of a file in the folder."""
        return join_key(self.path, *parts)

    def uri(self, key: str) -> str:
        return f"{self.store.location.rstrip('/')}/{key}" if key else self.store.location

    def prepare(self) -> None:
        """Prove the folder can be written, before any work, and drop what killed runs left.

        The check writes new content every time: writing the bytes a file already holds is a no-op.
        """
        self.store.write_bytes(self.key(WRITE_CHECK_NAME), f"{time.time_ns()}\n".encode())
        remove_stale_temporaries(self.store, self.path)

    def read(self, name: str) -> bytes | None:
        """A file of the folder (`manifest.jsonl`, `job.json`, `chunks/a.gz`), or None when absent."""
        return read_optional(self.store, self.key(name))

    def write(self, name: str, content: bytes) -> str:
        """Replace a file of the folder and return its URI."""
        key = self.key(name)
        self.store.write_bytes(key, content)
        return self.uri(key)

    def sync(self) -> None:
        """Make every write to the folder's store so far durable (a no-op on remote stores)."""
        make_durable(self.store)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every object below `prefix` (relative to the folder) -> its size, from one listing."""
        base = self.key(prefix)
        return {info.key[len(self.path):].lstrip("/"): info.size for info in self.store.list(base)}


def normalize_location(location: str) -> str:
    """A local destination as an absolute path (workers may run elsewhere); URIs unchanged."""
    if scheme_of(location) in LOCAL_SCHEMES:
        return str(local_path(location).absolute())
    return location.rstrip("/")


@lru_cache(maxsize=64)
def open_job_folder(destination: str, job: str, access: StorageAccess = StorageAccess()) -> JobFolder:
    """The job's folder under a destination, chosen by its URI scheme; resolved once per process."""
    if scheme_of(destination) not in DESTINATION_SCHEMES:
        raise InvalidParameterError(
            f"destination {destination!r} cannot be written; use a local directory, gs://BUCKET/PATH "
            "or gdrive://FOLDER_ID/PATH"
        )
    place = open_place(normalize_location(destination), access)
    return JobFolder(destination, job, place.writable("destination"), place.key(job))


def job_folder(settings: JobSettings) -> JobFolder:
    """The folder a job's settings name."""
    return open_job_folder(settings.destination, settings.job, settings.access)


def results_folder(settings: JobSettings) -> JobFolder:
    """The job's folder on result storage (the destination unless the user chose another location)."""
    return open_job_folder(settings.results, settings.job, settings.access)


def open_job_location(job_location: str, access: StorageAccess = StorageAccess()) -> JobFolder:
    """`<destination>/<job>` as its folder."""
    trimmed = normalize_location(job_location)
    parent, _, job = trimmed.rpartition("/")
    if not job or not parent:
        raise InvalidParameterError(f"{job_location!r} is not a job location (<destination>/<job>)")
    return open_job_folder(parent, job, access)
