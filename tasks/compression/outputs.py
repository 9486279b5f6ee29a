"""A compression job's outputs in its folder: `chunks/<id>.gz` and, next to it, `<id>.recipe.json`.

The recipe is written after its member, so its presence (with the member's size) marks the chunk
done, and a killed batch resumes at the first chunk without one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from tasks.compression.models import Recipe
from tasks.engine.item_ids import validate_item_id
from tasks.engine.job_folder import JobFolder
from tasks.errors import CorruptOutputError
from tasks.storage.stores import read_optional

CHUNKS_DIR = "chunks"
CHUNK_SUFFIX = ".gz"
RECIPE_SUFFIX = ".recipe.json"


def member_name(chunk_id: str) -> str:
    """The member's name below the job folder."""
    return f"{CHUNKS_DIR}/{validate_item_id(chunk_id)}{CHUNK_SUFFIX}"


def recipe_name(chunk_id: str) -> str:
    """The recipe's name below the job folder."""
    return f"{CHUNKS_DIR}/{validate_item_id(chunk_id)}{RECIPE_SUFFIX}"


def read_recipe(folder: JobFolder, chunk_id: str) -> Recipe | None:
    """The chunk's recipe, or None when the chunk is not there yet."""
    key = folder.key(recipe_name(chunk_id))
    content = read_optional(folder.store, key)
    if content is None:
        return None
    try:
        return Recipe.model_validate_json(content)
    except ValidationError as error:
        raise CorruptOutputError(
            f"recipe {folder.uri(key)!r} of chunk {chunk_id!r} is not a valid recipe "
            f"({error.error_count()} problems, first: {error.errors()[0]['msg']}); "
            "delete it and rerun the job to rebuild it"
        ) from None


def open_member(folder: JobFolder, chunk_id: str) -> AbstractContextManager[BinaryIO]:
    """Stream the compressed member of a chunk."""
    return folder.store.open_read(folder.key(member_name(chunk_id)))


def member_size(folder: JobFolder, chunk_id: str) -> int | None:
    """The stored size of a chunk's member, or None if it is absent."""
    info = folder.store.stat(folder.key(member_name(chunk_id)))
    return None if info is None else info.size


def put_chunk(folder: JobFolder, chunk_id: str, member: bytes | Path, recipe: Recipe) -> None:
    """Store a member (bytes, or a local file for large ones) and then its recipe, which marks it done."""
    key = folder.key(member_name(chunk_id))
    if isinstance(member, Path):
        folder.store.write_file(key, member)
    else:
        folder.store.write_bytes(key, member)
    folder.store.write_bytes(folder.key(recipe_name(chunk_id)), recipe.model_dump_json(indent=2).encode() + b"\n")
