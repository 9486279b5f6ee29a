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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import MissingObjectError

READ_BLOCK = 1024 * 1024

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

    def delete(self, key: str) -> None:
        """Remove the object; nothing happens when it is absent."""
        ...


def make_durable(store: ReadableStore) -> None:
    """Make the store's writes so far survive a machine crash.

    Remote stores are durable when a write returns; the local store syncs its file system.
    """
    sync: Callable[[], None] | None = getattr(store, "sync", None)
    if sync is not None:
        sync()


def delete_object(store: ObjectStore, key: str) -> None:
    """Remove the object; a no-op when it is already absent (so a rerun of a removal is harmless)."""
    store.delete(key)


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
