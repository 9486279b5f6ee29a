"""Object stores: the one storage interface under sources, destinations and result storage.

A store holds objects under POSIX keys ("job/chunks/a.txt.gz") below a root: a local directory,
a GCS bucket, a Google Drive folder, or a GitHub repository at a ref (read-only). A location
URI names a store and a path inside it (`Place`); one registry maps the URI scheme to the
store, so flows and stages never branch on a scheme.

Every write is idempotent: writing the bytes an object already holds changes nothing, and a
retried write never leaves a second object under the same key.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import DestinationError, InvalidParameterError, MissingObjectError
from tasks.locations import LOCAL_SCHEMES, local_path, scheme_of, unsupported_scheme_message

READ_BLOCK = 1024 * 1024

_UMASK = os.umask(0)
os.umask(_UMASK)


class StorageAccess(BaseModel):
    """Which credentials reach the remote stores. Names of Prefect blocks, never secrets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gcp_credentials: str | None = Field(
        default=None,
        description="GcpCredentials block for gs:// (empty: Application Default Credentials, "
        "or none when STORAGE_EMULATOR_HOST is set).",
    )
    drive: str | None = Field(
        default=None,
        description="DriveFolder block whose credentials reach gdrive:// (empty: Application Default Credentials).",
    )
    github_token: str | None = Field(
        default=None, description="Secret block holding a GitHub token for github:// (empty: anonymous)."
    )
    github_api_url: str = Field(
        default="https://api.github.com", description="GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)."
    )


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object without reading it.

    `version` identifies the content when the store gives such an id for free (GitHub: the git
    blob id); stores that give an md5 leave it None and the md5 serves instead.
    """

    key: str
    size: int
    md5: str | None = None
    sha256: str | None = None
    version: str | None = None


class ReadableStore(Protocol):
    """A store that can be listed and read."""

    @property
    def location(self) -> str:
        """The URI of the store's root, for messages and chunk URIs."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key is `prefix` or lies below it, sorted by key."""
        ...

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and hashes, or None when it is absent."""
        ...

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream the object's bytes; raise MissingObjectError when it is absent."""
        ...


class ObjectStore(ReadableStore, Protocol):
    """A store that can also be written."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or replace the object; a no-op when it already holds these bytes."""
        ...

    def write_file(self, key: str, path: Path) -> None:
        """Like `write_bytes`, streaming a local file (resumable on remotes)."""
        ...


def read_bytes(store: ReadableStore, key: str) -> bytes:
    """The whole object."""
    with store.open_read(key) as stream:
        return stream.read()


def read_optional(store: ReadableStore, key: str) -> bytes | None:
    """The whole object, or None when it is absent."""
    try:
        return read_bytes(store, key)
    except MissingObjectError:
        return None


def join_key(*parts: str) -> str:
    """Join key parts with '/', dropping empty ones."""
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def file_digests(path: Path) -> tuple[str, str]:
    """sha256 and md5 (hex) of a local file, read in blocks."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(READ_BLOCK):
            sha256.update(block)
            md5.update(block)
    return sha256.hexdigest(), md5.hexdigest()


class LocalStore:
    """A local directory. Writes go through a synced temporary file and a rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.path(prefix)
        if base.is_file():
            yield ObjectInfo(key=prefix, size=base.stat().st_size)
            return
        for directory, subdirectories, files in os.walk(base):
            subdirectories.sort()
            for name in sorted(files):
                file_path = Path(directory, name)
                if file_path.is_file() and not name.startswith(".partial-"):
                    key = file_path.relative_to(self.root).as_posix()
                    yield ObjectInfo(key=key, size=file_path.stat().st_size)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(key=key, size=self.path(key).stat().st_size)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise MissingObjectError(f"{str(self.path(key))!r} does not exist") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if _holds(path, data):
            return
        write_atomically(path, lambda handle: handle.write(data))

    def write_file(self, key: str, path: Path) -> None:
        def copy(handle: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, handle, READ_BLOCK)

        write_atomically(self.path(key), copy)


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file already holds exactly `data` (compared only when the sizes agree)."""
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def write_atomically(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Write a file through a synced temporary file and a rename; `fill` writes the content."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = create_temporary(path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        if isinstance(error, DestinationError):
            raise
        raise DestinationError.for_os_error(error, path) from None


STALE_TEMPORARY_SECONDS = 3600


def remove_stale_temporaries(store: ObjectStore | ReadableStore, prefix: str) -> int:
    """Delete `.partial-*` files below `prefix` that a killed run left behind; return how many.

    Only files untouched for an hour go: a run still writing one keeps its modification time
    fresh. Remote stores write atomically on the server side and leave no temporaries.
    """
    if not isinstance(store, LocalStore):
        return 0
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    removed = 0
    for temporary in store.path(prefix).rglob(".partial-*"):
        try:
            if temporary.is_file() and temporary.stat().st_mtime < cutoff:
                temporary.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def create_temporary(directory: Path) -> tuple[int, str]:
    """Open a hidden temporary file with the usual permissions (mkstemp alone gives 0600)."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".partial-")
    os.fchmod(descriptor, 0o666 & ~_UMASK)
    return descriptor, temporary


@dataclass(frozen=True)
class Place:
    """A location resolved: a store and a key prefix inside it ('' for the store's root)."""

    store: ObjectStore | ReadableStore
    path: str

    def key(self, *parts: str) -> str:
        return join_key(self.path, *parts)

    def uri(self, key: str) -> str:
        return f"{self.store.location.rstrip('/')}/{key}" if key else self.store.location

    def writable(self, role: str) -> ObjectStore:
        """The store, if it can be written; a clear error otherwise."""
        if not hasattr(self.store, "write_bytes"):
            raise InvalidParameterError(
                f"{role} {self.store.location!r} is read-only; use a local directory, gs:// or gdrive://"
            )
        return self.store  # type: ignore[return-value]


# scheme -> "module:function"; the function takes (location, access) and returns a Place.
# Remote modules import their client libraries, so they load only when a job uses them.
_PLACE_FACTORIES: dict[str, str] = {
    "gs": "tasks.gcs:gcs_place",
    "gdrive": "tasks.drive:drive_place",
    "github": "tasks.github:github_place",
}
WRITABLE_SCHEMES = frozenset({*LOCAL_SCHEMES, "gs", "gdrive"})
READABLE_SCHEMES = frozenset({*WRITABLE_SCHEMES, "github"})


def local_place(location: str) -> Place:
    """A local directory (or file) as a Place rooted at itself."""
    path = local_path(location)
    return Place(store=LocalStore(path), path="")


@lru_cache(maxsize=64)
def open_place(location: str, access: StorageAccess = StorageAccess()) -> Place:
    """Resolve a location to its store and path, by URI scheme. Stores are reused per process."""
    scheme = scheme_of(location)
    if scheme in LOCAL_SCHEMES:
        return local_place(location)
    target = _PLACE_FACTORIES.get(scheme)
    if target is None:
        raise InvalidParameterError(unsupported_scheme_message("location", location))
    module_name, function_name = target.split(":")
    factory: Callable[[str, StorageAccess], Place] = getattr(importlib.import_module(module_name), function_name)
    return factory(location, access)


def split_container(scheme: str, location: str, expected: str, hint: str = "") -> tuple[str, str]:
    """`scheme://CONTAINER/PATH` as (CONTAINER, PATH), PATH verbatim: object names may hold '?' or '#'."""
    rest = location[len(scheme) + 3:] if location.startswith(f"{scheme}://") else ""
    container, _, path = rest.partition("/")
    if not container or any(character in container for character in "?#@:"):
        raise InvalidParameterError(f"{location!r} is not a {expected} location{hint}")
    return container, path.strip("/")


def relative_key(key: str, prefix: str) -> str:
    """A key relative to a prefix; the last segment when the key is the prefix itself."""
    if key == prefix:
        return PurePosixPath(key).name
    return key[len(prefix):].lstrip("/") if prefix else key
