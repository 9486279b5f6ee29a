"""Where outputs go: `<destination>/<job>/chunks/<id>.gz`, `<id>.recipe.json`, `manifest.jsonl`.

Writes are atomic (temporary file, fsync, rename), so a reader never sees half a file and a
killed process leaves at most a stray temporary file, which the next write replaces.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from tasks.chunk_ids import validate_chunk_id
from tasks.errors import CorruptOutputError, DestinationError
from tasks.locations import LOCAL_SCHEMES, local_path, open_location
from tasks.models import Recipe

RECIPE_SUFFIX = ".recipe.json"
CHUNK_SUFFIX = ".gz"
MANIFEST_NAME = "manifest.jsonl"

_UMASK = os.umask(0)
os.umask(_UMASK)


class Destination(Protocol):
    """A place that stores the outputs of jobs."""

    def prepare(self, job: str) -> None:
        """Create the job's folders and prove they can be written, before any work."""
        ...

    def read_recipe(self, job: str, chunk_id: str) -> Recipe | None:
        """Return the chunk's recipe, or None when the chunk is not there yet."""
        ...

    def read_chunk(self, job: str, chunk_id: str) -> bytes:
        """Return the compressed member of a chunk."""
        ...

    def chunk_size(self, job: str, chunk_id: str) -> int | None:
        """Return the stored size of a chunk's member, or None if it is absent."""
        ...

    def put_chunk(self, job: str, chunk_id: str, member: bytes, recipe: Recipe) -> None:
        """Store a member and then its recipe; the recipe's presence marks the chunk done."""
        ...

    def put_manifest(self, job: str, content: bytes) -> str:
        """Replace the job's manifest and return where it is."""
        ...


class LocalDestination:
    """A local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def job_dir(self, job: str) -> Path:
        return self.root / job

    def chunk_path(self, job: str, chunk_id: str, suffix: str) -> Path:
        return self.root / job / "chunks" / (validate_chunk_id(chunk_id) + suffix)

    def prepare(self, job: str) -> None:
        chunks = self.root / job / "chunks"
        try:
            chunks.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=chunks):
                pass
        except OSError as error:
            raise _destination_error(error, chunks) from None

    def read_recipe(self, job: str, chunk_id: str) -> Recipe | None:
        path = self.chunk_path(job, chunk_id, RECIPE_SUFFIX)
        try:
            return Recipe.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as error:
            raise CorruptOutputError(
                f"recipe {str(path)!r} of chunk {chunk_id!r} is not a valid recipe "
                f"({error.error_count()} problems, first: {error.errors()[0]['msg']}); "
                "delete it and rerun the job to rebuild it"
            ) from None

    def read_chunk(self, job: str, chunk_id: str) -> bytes:
        return self.chunk_path(job, chunk_id, CHUNK_SUFFIX).read_bytes()

    def chunk_size(self, job: str, chunk_id: str) -> int | None:
        try:
            return self.chunk_path(job, chunk_id, CHUNK_SUFFIX).stat().st_size
        except FileNotFoundError:
            return None

    def put_chunk(self, job: str, chunk_id: str, member: bytes, recipe: Recipe) -> None:
        write_atomically(self.chunk_path(job, chunk_id, CHUNK_SUFFIX), member)
        write_atomically(
            self.chunk_path(job, chunk_id, RECIPE_SUFFIX),
            recipe.model_dump_json(indent=2).encode() + b"\n",
        )

    def put_manifest(self, job: str, content: bytes) -> str:
        path = self.root / job / MANIFEST_NAME
        write_atomically(path, content)
        return str(path)


def write_atomically(path: Path, content: bytes) -> None:
    """Write `content` to `path` through a synced temporary file and a rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = create_temporary(path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise _destination_error(error, path) from None


def create_temporary(directory: Path) -> tuple[int, str]:
    """Open a hidden temporary file with the usual permissions (mkstemp alone gives 0600)."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".partial-")
    os.fchmod(descriptor, 0o666 & ~_UMASK)
    return descriptor, temporary


def _destination_error(error: OSError, path: Path) -> DestinationError:
    advice = {
        errno.EACCES: "no permission to write there; choose a destination you own or fix its permissions",
        errno.EPERM: "the operation is not permitted there; choose another destination",
        errno.EROFS: "the file system is read-only; choose a writable destination",
        errno.ENOSPC: "the disk is full; free space or choose another destination, then rerun (finished chunks are kept)",
        errno.EDQUOT: "the disk quota is exhausted; free space or choose another destination, then rerun",
        errno.ENAMETOOLONG: "a file name is too long for this file system; shorten the chunk's name "
        f"(its last segment plus {RECIPE_SUFFIX!r} must fit in 255 bytes)",
        errno.ENOTDIR: "a path component is a file, not a directory; choose another destination",
    }.get(error.errno or 0, "see the system error")
    return DestinationError(f"cannot write {str(path)!r}: {error.strerror}; {advice}")


_DESTINATIONS: dict[str, Callable[[str], LocalDestination]] = {
    scheme: lambda location: LocalDestination(local_path(location)) for scheme in LOCAL_SCHEMES
}
DESTINATION_SCHEMES = frozenset(_DESTINATIONS)


def open_destination(location: str) -> LocalDestination:
    """Return the destination for a location, chosen by its URI scheme."""
    return open_location("destination", location, _DESTINATIONS)
