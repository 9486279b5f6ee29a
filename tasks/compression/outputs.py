"""A compression job's outputs in its folder: `chunks/<id>.gz`, and the recipes in one journal per batch.

A batch writes its members first, then `recipes/<batch>.jsonl`, one recipe per line: the
journal's presence marks the batch's chunks done, with one file creation per batch instead of
one per chunk. Folders written before the journals (checkpoint formats 1 and 2) keep a
`chunks/<id>.recipe.json` next to each member; they are read the same way.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from tasks.compression.models import Recipe
from tasks.engine.item_ids import validate_item_id
from tasks.engine.job_folder import JobFolder
from tasks.engine.models import ItemFailure, ItemFingerprint
from tasks.errors import CorruptOutputError
from tasks.storage.stores import read_optional

CHUNKS_DIR = "chunks"
CHUNK_SUFFIX = ".gz"
JOURNALS_DIR = "recipes"
RECIPE_SUFFIX = ".recipe.json"  # one recipe per chunk, as folders before the journals have them
JOURNAL_READERS = 16

logger = logging.getLogger("colabflow.compression")


def member_name(chunk_id: str) -> str:
    """The member's name below the job folder."""
    return f"{CHUNKS_DIR}/{validate_item_id(chunk_id)}{CHUNK_SUFFIX}"


def recipe_name(chunk_id: str) -> str:
    """Where a folder of an older version keeps a chunk's own recipe."""
    return f"{CHUNKS_DIR}/{validate_item_id(chunk_id)}{RECIPE_SUFFIX}"


def journal_name(batch: list[ItemFingerprint]) -> str:
    """A batch's journal, named by its chunks and their contents, so the same batch run again finds it."""
    content = "\n".join(sorted(f"{chunk.item_id}\0{chunk.sha256}" for chunk in batch))
    return f"{JOURNALS_DIR}/{hashlib.sha256(content.encode()).hexdigest()[:40]}.jsonl"


def write_journal(folder: JobFolder, batch: list[ItemFingerprint], recipes: list[Recipe]) -> None:
    """Write the recipes of a batch's finished chunks, after their members: this marks them done."""
    if recipes:
        lines = (recipe.model_dump_json().encode() + b"\n" for recipe in sorted(recipes, key=_by_id))
        folder.write(journal_name(batch), b"".join(lines))


def read_journal(folder: JobFolder, batch: list[ItemFingerprint]) -> dict[str, Recipe]:
    """The recipes in the batch's own journal, by chunk id; none when it has none (or it is damaged)."""
    name = journal_name(batch)
    return _parse_journal(folder, name, folder.read(name) or b"", [])


def _by_id(recipe: Recipe) -> str:
    return recipe.chunk_id


def _parse_journal(folder: JobFolder, name: str, content: bytes, damaged: list[str]) -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for number, line in enumerate(content.splitlines(), start=1):
        try:
            recipe = Recipe.model_validate_json(line)
        except ValidationError as error:
            damaged.append(f"line {number} of {folder.uri(folder.key(name))} is not a recipe ({error.errors()[0]['msg']})")
            logger.warning("skipping %s", damaged[-1])
            continue
        recipes[recipe.chunk_id] = recipe
    return recipes


def put_member(folder: JobFolder, chunk_id: str, member: bytes | Path) -> None:
    """Store a chunk's member: bytes, or a local file for large ones."""
    key = folder.key(member_name(chunk_id))
    if isinstance(member, Path):
        folder.store.write_file(key, member)
    else:
        folder.store.write_bytes(key, member)


def open_member(folder: JobFolder, chunk_id: str) -> AbstractContextManager[BinaryIO]:
    """Stream the compressed member of a chunk."""
    return folder.store.open_read(folder.key(member_name(chunk_id)))


def member_size(folder: JobFolder, chunk_id: str) -> int | None:
    """The stored size of a chunk's member, or None if it is absent."""
    info = folder.store.stat(folder.key(member_name(chunk_id)))
    return None if info is None else info.size


Outcome = tuple[Recipe, bool] | ItemFailure
"""A chunk's recipe and whether the folder already held it, or its failure."""


@dataclass(frozen=True)
class RecipeIndex:
    """Every recipe a job folder holds, by chunk id: from its journals, or per chunk in older folders."""

    folder: JobFolder
    journaled: dict[str, Recipe]
    per_chunk: frozenset[str]
    damaged: tuple[str, ...] = ()
    overlay: dict[str, Recipe] = field(default_factory=dict)

    def with_recipes(self, recipes: dict[str, Recipe]) -> RecipeIndex:
        """This index with `recipes` (a batch's own journal) looked up first; the index itself is shared, not copied."""
        return RecipeIndex(self.folder, self.journaled, self.per_chunk, self.damaged, recipes)

    def get(self, chunk_id: str) -> Recipe | None:
        """The chunk's recipe, or None when the folder has none; a damaged per-chunk recipe is named."""
        found = self.overlay.get(chunk_id) or self.journaled.get(chunk_id)
        if found is not None:
            return found
        return read_recipe(self.folder, chunk_id) if chunk_id in self.per_chunk else None


def finished_recipe(
    index: RecipeIndex, folder: JobFolder, chunk: ItemFingerprint, output: tuple[str, str, int]
) -> Recipe | None:
    """The chunk's recipe if the folder already holds this exact output.

    `output` is the codec name, codec version and level the recipe must name.
    """
    recipe = index.get(chunk.item_id)
    if (
        recipe is None
        or recipe.original_sha256 != chunk.sha256
        or (recipe.codec, recipe.codec_version, recipe.level) != output
        or member_size(folder, chunk.item_id) != recipe.compressed_size
    ):
        return None
    return recipe


def load_recipe_index(folder: JobFolder) -> RecipeIndex:
    """One listing of `recipes/` and of `chunks/`, and a read of each journal (a damaged line is skipped, logged)."""
    journals = [name for name in folder.sizes(JOURNALS_DIR) if name.endswith(".jsonl")]
    with ThreadPoolExecutor(JOURNAL_READERS) as pool:
        contents = list(pool.map(folder.read, journals))
    journaled: dict[str, Recipe] = {}
    damaged: list[str] = []
    for name, content in zip(journals, contents):
        journaled.update(_parse_journal(folder, name, content or b"", damaged))
    per_chunk = frozenset(
        name[len(CHUNKS_DIR) + 1:-len(RECIPE_SUFFIX)] for name in folder.sizes(CHUNKS_DIR) if name.endswith(RECIPE_SUFFIX)
    )
    return RecipeIndex(folder, journaled, per_chunk, tuple(damaged))


def read_recipe(folder: JobFolder, chunk_id: str) -> Recipe | None:
    """A chunk's own recipe file (folders before the journals), or None when it has none."""
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
