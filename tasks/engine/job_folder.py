"""Where outputs go: `<destination>/<job>/chunks/<id>.gz`, `<id>.recipe.json`, `manifest.jsonl`.

A destination is a location (a local directory, `gs://BUCKET/PATH` or `gdrive://FOLDER_ID/PATH`)
resolved to an object store. Every write is atomic and idempotent on every backend: a reader
never sees half an object, and writing the same bytes twice changes nothing.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from tasks.compression.models import Recipe
from tasks.engine.item_ids import RECIPE_SUFFIX, validate_chunk_id
from tasks.errors import CorruptOutputError, InvalidParameterError
from tasks.storage.local import remove_stale_temporaries
from tasks.storage.locations import LOCAL_SCHEMES, local_path, scheme_of
from tasks.storage.places import WRITABLE_SCHEMES, open_place
from tasks.storage.stores import ObjectStore, StorageAccess, read_optional

CHUNK_SUFFIX = ".gz"
MANIFEST_NAME = "manifest.jsonl"
WRITE_CHECK_NAME = ".colabflow-write-check"
DESTINATION_SCHEMES = WRITABLE_SCHEMES


class Destination:
    """The job folders under one destination location."""

    def __init__(self, location: str, store: ObjectStore, path: str) -> None:
        self.location = location
        self.store = store
        self.path = path

    def key(self, job: str, *parts: str) -> str:
        return "/".join(part for part in (self.path, job, *parts) if part)

    def chunk_key(self, job: str, chunk_id: str, suffix: str) -> str:
        return self.key(job, "chunks", validate_chunk_id(chunk_id) + suffix)

    def uri(self, key: str) -> str:
        return f"{self.store.location.rstrip('/')}/{key}"

    def prepare(self, job: str) -> None:
        """Prove the job folder can be written, before any work, and drop what killed runs left.

        The check writes new content every time: writing the bytes a file already holds is a no-op.
        """
        self.store.write_bytes(self.key(job, WRITE_CHECK_NAME), f"{time.time_ns()}\n".encode())
        remove_stale_temporaries(self.store, self.key(job))

    def read_recipe(self, job: str, chunk_id: str) -> Recipe | None:
        """Return the chunk's recipe, or None when the chunk is not there yet."""
        key = self.chunk_key(job, chunk_id, RECIPE_SUFFIX)
        content = read_optional(self.store, key)
        if content is None:
            return None
        try:
            return Recipe.model_validate_json(content)
        except ValidationError as error:
            raise CorruptOutputError(
                f"recipe {self.uri(key)!r} of chunk {chunk_id!r} is not a valid recipe "
                f"({error.error_count()} problems, first: {error.errors()[0]['msg']}); "
                "delete it and rerun the job to rebuild it"
            ) from None

    def open_chunk(self, job: str, chunk_id: str) -> AbstractContextManager[BinaryIO]:
        """Stream the compressed member of a chunk."""
        return self.store.open_read(self.chunk_key(job, chunk_id, CHUNK_SUFFIX))

    def chunk_size(self, job: str, chunk_id: str) -> int | None:
        """Return the stored size of a chunk's member, or None if it is absent."""
        info = self.store.stat(self.chunk_key(job, chunk_id, CHUNK_SUFFIX))
        return None if info is None else info.size

    def put_chunk(self, job: str, chunk_id: str, member: bytes | Path, recipe: Recipe) -> None:
        """Store a member (bytes, or a local file for large ones) and then its recipe.

        The recipe's presence marks the chunk done, so it is written last.
        """
        key = self.chunk_key(job, chunk_id, CHUNK_SUFFIX)
        if isinstance(member, Path):
            self.store.write_file(key, member)
        else:
            self.store.write_bytes(key, member)
        self.store.write_bytes(
            self.chunk_key(job, chunk_id, RECIPE_SUFFIX), recipe.model_dump_json(indent=2).encode() + b"\n"
        )

    def read_job_file(self, job: str, name: str) -> bytes | None:
        """A job-level file (manifest, job record, quarantine, telemetry), or None."""
        return read_optional(self.store, self.key(job, name))

    def put_job_file(self, job: str, name: str, content: bytes) -> str:
        """Replace a job-level file and return its URI."""
        key = self.key(job, name)
        self.store.write_bytes(key, content)
        return self.uri(key)

    def put_manifest(self, job: str, content: bytes) -> str:
        """Replace the job's manifest and return where it is."""
        return self.put_job_file(job, MANIFEST_NAME, content)


def normalize_location(location: str) -> str:
    """A local destination as an absolute path (workers may run elsewhere); URIs unchanged."""
    if scheme_of(location) in LOCAL_SCHEMES:
        return str(local_path(location).absolute())
    return location.rstrip("/")


def open_destination(location: str, access: StorageAccess = StorageAccess()) -> Destination:
    """Return the destination for a location, chosen by its URI scheme."""
    if scheme_of(location) not in DESTINATION_SCHEMES:
        raise InvalidParameterError(
            f"destination {location!r} cannot be written; use a local directory, gs://BUCKET/PATH "
            "or gdrive://FOLDER_ID/PATH"
        )
    place = open_place(normalize_location(location), access)
    return Destination(location, place.writable("destination"), place.path)


def split_job_location(job_location: str) -> tuple[str, str]:
    """`<destination>/<job>` as (destination, job)."""
    trimmed = normalize_location(job_location)
    parent, _, job = trimmed.rpartition("/")
    if not job or not parent:
        raise InvalidParameterError(f"{job_location!r} is not a job location (<destination>/<job>)")
    return parent, job
