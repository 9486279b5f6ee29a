"""Where chunks come from. A URI scheme picks the `Source`; flows never branch on a scheme.

Local directories are walked directly; `github://`, `gs://` and `gdrive://` locations are
listed through their object store (tasks/storage/stores.py). A chunk is read as a stream, so a chunk
of several GiB never has to fit in memory.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote_from_bytes

from tasks.engine.fingerprints import local_version
from tasks.engine.item_ids import validate_item_id
from tasks.engine.models import ItemFailure, ItemRef
from tasks.errors import (
    EmptySourceError,
    InvalidChunkError,
    MissingObjectError,
    SourceNotFoundError,
)
from tasks.storage.local import walk_files
from tasks.storage.locations import LOCAL_SCHEMES, local_path, open_location, scheme_of
from tasks.storage.places import READABLE_SCHEMES, Place, open_place, relative_key
from tasks.storage.stores import ObjectInfo, StorageAccess


class Source(Protocol):
    """A location that holds chunks."""

    def list_chunks(self) -> tuple[list[ItemRef], list[ItemFailure]]:
        """List valid chunks, and the entries whose ids are invalid."""
        ...


class LocalSource:
    """A local file, or a directory whose regular files are the chunks (recursively)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list_chunks(self) -> tuple[list[ItemRef], list[ItemFailure]]:
        if not self.path.exists():
            raise SourceNotFoundError(
                f"source {str(self.path)!r} does not exist; give an existing directory or file"
            )
        listed_at = time.time()
        if self.path.is_file():
            return _refs_for([_local_entry(self.path.name, self.path, listed_at)])
        root_uri = self.path.absolute().as_uri().rstrip("/")
        found = []
        for chunk_id, entry in walk_files(self.path):
            stat = entry.stat()
            uri = f"{root_uri}/{quote_from_bytes(os.fsencode(chunk_id))}"
            found.append((chunk_id, uri, stat.st_size, local_version(stat, listed_at)))
        return _refs_for(found)


def _local_entry(chunk_id: str, path: Path, listed_at: float) -> tuple[str, str, int, str | None]:
    stat = path.stat()
    return chunk_id, path.absolute().as_uri(), stat.st_size, local_version(stat, listed_at)


def _remote_version(info: ObjectInfo) -> str | None:
    if info.version is not None:
        return info.version
    return f"md5:{info.md5}:{info.size}" if info.md5 else None


class StoreSource:
    """A remote location: one object, or every object below a path, of an object store."""

    def __init__(self, place: Place) -> None:
        self.place = place

    def list_chunks(self) -> tuple[list[ItemRef], list[ItemFailure]]:
        found = [
            (relative_key(info.key, self.place.path), self.place.uri(info.key), info.size, _remote_version(info))
            for info in self.place.store.list(self.place.path)
        ]
        if not found:
            raise SourceNotFoundError(
                f"source {self.place.uri(self.place.path)!r} does not exist or holds no files; check the path"
            )
        return _refs_for(found)


def _refs_for(entries: list[tuple[str, str, int, str | None]]) -> tuple[list[ItemRef], list[ItemFailure]]:
    refs: list[ItemRef] = []
    failures: list[ItemFailure] = []
    for chunk_id, uri, size, version in entries:
        try:
            validate_item_id(chunk_id)
        except InvalidChunkError as error:
            failures.append(ItemFailure(item_id=chunk_id.encode("utf-8", "backslashreplace").decode(), reason=str(error)))
            continue
        refs.append(ItemRef(item_id=chunk_id, uri=uri, size=size, version=version))
    return refs, failures


SOURCE_SCHEMES = READABLE_SCHEMES


def open_source(location: str, access: StorageAccess = StorageAccess()) -> Source:
    """Return the `Source` for a location, chosen by its URI scheme."""
    if scheme_of(location) not in SOURCE_SCHEMES:
        return open_location("source", location, {})
    if scheme_of(location) in LOCAL_SCHEMES:
        return LocalSource(local_path(location))
    return StoreSource(open_place(location, access))


def list_sources(
    locations: list[str], access: StorageAccess = StorageAccess()
) -> tuple[list[ItemRef], list[ItemFailure]]:
    """List the chunks of every location. Chunk ids must be unique across them."""
    refs: dict[str, ItemRef] = {}
    failures: list[ItemFailure] = []
    for location in locations:
        found, invalid = open_source(location, access).list_chunks()
        failures.extend(invalid)
        for ref in found:
            if ref.item_id in refs:
                failures.append(ItemFailure(
                    item_id=ref.item_id,
                    reason=f"chunk id {ref.item_id!r} comes from both {refs[ref.item_id].uri} "
                    f"and {ref.uri}; chunk ids must be unique within a job",
                ))
                continue
            refs[ref.item_id] = ref
    if not refs and not failures:
        raise EmptySourceError(
            f"source {', '.join(locations)!r} contains no files; point it at a folder that holds the files to process"
        )
    return list(refs.values()), failures


def open_chunk(uri: str, access: StorageAccess = StorageAccess()) -> AbstractContextManager[BinaryIO]:
    """Stream one chunk's bytes from wherever its URI points."""
    if scheme_of(uri) in LOCAL_SCHEMES:
        path = local_path(uri)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise SourceNotFoundError(
                f"chunk file {str(path)!r} disappeared after it was listed; rerun the job"
            ) from None
    place = open_place(uri, access)
    try:
        return place.store.open_read(place.path)
    except MissingObjectError as error:
        raise SourceNotFoundError(f"chunk {uri!r} disappeared after it was listed ({error}); rerun the job") from None


def read_chunk(uri: str, access: StorageAccess = StorageAccess()) -> bytes:
    """Read one chunk's bytes from wherever its URI points."""
    with open_chunk(uri, access) as stream:
        return stream.read()
