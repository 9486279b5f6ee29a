"""Where chunks come from. A URI scheme picks the `Source`; flows never branch on a scheme.

Local directories are walked directly (tasks/storage/local_tree.py: symlinks outside the root
are left out unless `follow_symlinks`); `github://`, `gs://` and `gdrive://` locations are listed
through their object store (tasks/storage/stores.py). A chunk is read as a stream, so a chunk of
several GiB never has to fit in memory.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote_from_bytes

from tasks.engine.fingerprints import local_version
from tasks.engine.item_ids import validate_item_id
from tasks.engine.models import ItemFailure, ItemRef, SkippedEntry
from tasks.errors import (
    EmptySourceError,
    InvalidChunkError,
    MissingObjectError,
    SourceNotFoundError,
)
from tasks.storage.local_tree import walk_source_tree
from tasks.storage.locations import LOCAL_SCHEMES, local_path, open_location, scheme_of
from tasks.storage.places import READABLE_SCHEMES, Place, open_place, relative_key
from tasks.storage.stores import ObjectInfo, StorageAccess


@dataclass
class SourceListing:
    """The valid chunks of one or more sources, the entries whose ids are invalid, and those left out."""

    refs: list[ItemRef] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


class Source(Protocol):
    """A location that holds chunks."""

    def list_chunks(self) -> SourceListing:
        """List valid chunks, the entries whose ids are invalid, and the entries left out on purpose."""
        ...


class LocalSource:
    """A local file, or a directory whose regular files are the chunks (recursively).

    A file named as the source is read even when it is a symlink: the user named it.
    """

    def __init__(self, path: Path, follow_symlinks: bool = False) -> None:
        self.path = path
        self.follow_symlinks = follow_symlinks

    def list_chunks(self) -> SourceListing:
        if not self.path.exists():
            raise SourceNotFoundError(
                f"source {str(self.path)!r} does not exist; give an existing directory or file"
            )
        listed_at = time.time()
        if self.path.is_file():
            return _listing_of([_local_entry(self.path.name, self.path, listed_at)])
        root_uri = self.path.absolute().as_uri().rstrip("/")
        tree = walk_source_tree(self.path, self.follow_symlinks)
        found = [
            (file.relative, f"{root_uri}/{quote_from_bytes(os.fsencode(file.relative))}", file.stat.st_size,
             local_version(file.stat, listed_at))
            for file in tree.files
        ]
        listing = _listing_of(found)
        listing.skipped = [SkippedEntry(item_id=_displayable(link.relative), reason=_displayable(link.reason))
                           for link in tree.skipped]
        return listing


def _displayable(name: str) -> str:
    """A file name as text that JSON can carry: bytes that are not UTF-8 become backslash escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


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

    def list_chunks(self) -> SourceListing:
        found = [
            (relative_key(info.key, self.place.path), self.place.uri(info.key), info.size, _remote_version(info))
            for info in self.place.store.list(self.place.path)
        ]
        if not found:
            raise SourceNotFoundError(
                f"source {self.place.uri(self.place.path)!r} does not exist or holds no files; check the path"
            )
        return _listing_of(found)


def _listing_of(entries: list[tuple[str, str, int, str | None]]) -> SourceListing:
    listing = SourceListing()
    for chunk_id, uri, size, version in entries:
        try:
            validate_item_id(chunk_id)
        except InvalidChunkError as error:
            listing.failures.append(ItemFailure(item_id=_displayable(chunk_id), reason=str(error)))
            continue
        listing.refs.append(ItemRef(item_id=chunk_id, uri=uri, size=size, version=version))
    return listing


SOURCE_SCHEMES = READABLE_SCHEMES


def open_source(location: str, access: StorageAccess = StorageAccess(), follow_symlinks: bool = False) -> Source:
    """Return the `Source` for a location, chosen by its URI scheme; `follow_symlinks` concerns local folders."""
    if scheme_of(location) not in SOURCE_SCHEMES:
        return open_location("source", location, {})
    if scheme_of(location) in LOCAL_SCHEMES:
        return LocalSource(local_path(location), follow_symlinks)
    return StoreSource(open_place(location, access))


def scan_sources(
    locations: list[str], access: StorageAccess = StorageAccess(), follow_symlinks: bool = False
) -> SourceListing:
    """List the chunks of every location, and the entries left out. Chunk ids must be unique across them."""
    refs: dict[str, ItemRef] = {}
    listing = SourceListing()
    for location in locations:
        found = open_source(location, access, follow_symlinks).list_chunks()
        listing.failures.extend(found.failures)
        listing.skipped.extend(found.skipped)
        for ref in found.refs:
            if ref.item_id in refs:
                listing.failures.append(ItemFailure(
                    item_id=ref.item_id,
                    reason=f"chunk id {ref.item_id!r} comes from both {refs[ref.item_id].uri} "
                    f"and {ref.uri}; chunk ids must be unique within a job",
                ))
                continue
            refs[ref.item_id] = ref
    if not refs and not listing.failures:
        left_out = f" ({describe_skipped(listing.skipped)})" if listing.skipped else ""
        raise EmptySourceError(
            f"source {', '.join(locations)!r} contains no files{left_out}; point it at a folder that holds the files "
            "to process"
        )
    listing.refs = list(refs.values())
    return listing


def list_sources(
    locations: list[str], access: StorageAccess = StorageAccess(), follow_symlinks: bool = False
) -> tuple[list[ItemRef], list[ItemFailure]]:
    """The chunks of every location and the invalid entries, without the entries left out (`scan_sources`)."""
    listing = scan_sources(locations, access, follow_symlinks)
    return listing.refs, listing.failures


def describe_skipped(skipped: list[SkippedEntry], shown: int = 3) -> str:
    """The first entries left out, each with its reason, and how many more."""
    named = "; ".join(f"{entry.item_id}: {entry.reason}" for entry in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"{len(skipped)} symlink{'' if len(skipped) == 1 else 's'} left out: {named}{more}"


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
