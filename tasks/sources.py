"""Where chunks come from. A URI scheme picks the `Source`; flows never branch on a scheme."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tasks.chunk_ids import validate_chunk_id
from tasks.errors import EmptySourceError, InvalidChunkError, SourceNotFoundError
from tasks.locations import LOCAL_SCHEMES, local_path, open_location
from tasks.models import ChunkFailure, ChunkRef


class Source(Protocol):
    """A location that holds chunks."""

    def list_chunks(self) -> tuple[list[ChunkRef], list[ChunkFailure]]:
        """List valid chunks, and the entries whose ids are invalid."""
        ...

    def read_chunk(self, uri: str) -> bytes:
        """Return the bytes of the chunk at `uri`."""
        ...


class LocalSource:
    """A local file, or a directory whose regular files are the chunks (recursively)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list_chunks(self) -> tuple[list[ChunkRef], list[ChunkFailure]]:
        if not self.path.exists():
            raise SourceNotFoundError(
                f"source {str(self.path)!r} does not exist; give an existing directory or file"
            )
        if self.path.is_file():
            return _refs_for([(self.path.name, self.path)])
        found: list[tuple[str, Path]] = []
        for directory, subdirectories, files in os.walk(self.path):
            subdirectories.sort()
            for name in sorted(files):
                file_path = Path(directory, name)
                if file_path.is_file():
                    found.append((file_path.relative_to(self.path).as_posix(), file_path))
        return _refs_for(found)

    def read_chunk(self, uri: str) -> bytes:
        path = local_path(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SourceNotFoundError(
                f"chunk file {str(path)!r} disappeared after it was listed; rerun the job"
            ) from None


def _refs_for(entries: list[tuple[str, Path]]) -> tuple[list[ChunkRef], list[ChunkFailure]]:
    refs: list[ChunkRef] = []
    failures: list[ChunkFailure] = []
    for chunk_id, path in entries:
        try:
            validate_chunk_id(chunk_id)
        except InvalidChunkError as error:
            failures.append(ChunkFailure(chunk_id=chunk_id.encode("utf-8", "backslashreplace").decode(), reason=str(error)))
            continue
        refs.append(ChunkRef(chunk_id=chunk_id, uri=path.absolute().as_uri(), size=path.stat().st_size))
    return refs, failures


_SOURCES: dict[str, Callable[[str], Source]] = {
    scheme: lambda location: LocalSource(local_path(location)) for scheme in LOCAL_SCHEMES
}
SOURCE_SCHEMES = frozenset(_SOURCES)


def open_source(location: str) -> Source:
    """Return the `Source` for a location, chosen by its URI scheme."""
    return open_location("source", location, _SOURCES)


def list_sources(locations: list[str]) -> tuple[list[ChunkRef], list[ChunkFailure]]:
    """List the chunks of every location. Chunk ids must be unique across them."""
    refs: dict[str, ChunkRef] = {}
    failures: list[ChunkFailure] = []
    for location in locations:
        found, invalid = open_source(location).list_chunks()
        failures.extend(invalid)
        for ref in found:
            if ref.chunk_id in refs:
                failures.append(ChunkFailure(
                    chunk_id=ref.chunk_id,
                    reason=f"chunk id {ref.chunk_id!r} comes from both {refs[ref.chunk_id].uri} "
                    f"and {ref.uri}; chunk ids must be unique within a job",
                ))
                continue
            refs[ref.chunk_id] = ref
    if not refs and not failures:
        raise EmptySourceError(
            f"source {', '.join(locations)!r} contains no files; point it at a directory with chunks"
        )
    return list(refs.values()), failures


def read_chunk(uri: str) -> bytes:
    """Read one chunk's bytes from wherever its URI points."""
    return open_source(uri).read_chunk(uri)
