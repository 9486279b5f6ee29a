"""Restore and verify a job folder: every chunk decompressed, sized and hashed against its recipe.

Reads only what the job folder holds (manifest, recipes, members), never the source, and
never unpickles anything. The job folder may be local, on GCS or on Drive; each member is
streamed through the sha256 check, so memory stays bounded. A restored file appears under its final name only after its sha256
matched.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from tasks.compression.models import ManifestEntry, Recipe
from tasks.compression.outputs import (
    JOURNALS_DIR,
    RecipeIndex,
    load_recipe_index,
    open_member,
)
from tasks.engine.item_ids import validate_item_id
from tasks.engine.job_folder import MANIFEST_NAME, JobFolder, open_job_location
from tasks.engine.models import ItemFailure
from tasks.engine.verify import JobCheck
from tasks.errors import ColabflowError, CorruptOutputError, MissingObjectError
from tasks.storage.local import create_temporary
from tasks.storage.stores import StorageAccess

_BLOCK = 1024 * 1024


def read_manifest(folder: JobFolder) -> tuple[list[ManifestEntry], list[ItemFailure]]:
    """Parse `manifest.jsonl`; each unreadable line is a problem, not a crash."""
    content = folder.read(MANIFEST_NAME)
    if content is None:
        raise CorruptOutputError(
            f"{folder.uri(folder.key(MANIFEST_NAME))!r} does not exist; "
            "give a job folder (<destination>/<job>) of a finished run"
        )
    entries: list[ManifestEntry] = []
    problems: list[ItemFailure] = []
    for number, line in enumerate(content.splitlines(), start=1):
        try:
            entry = ManifestEntry.model_validate_json(line)
            validate_item_id(entry.chunk_id)
        except (ValidationError, ColabflowError) as error:
            problems.append(ItemFailure(item_id=f"manifest line {number}", reason=f"unusable: {error}"))
            continue
        entries.append(entry)
    return entries, problems


def decompress_member(member: BinaryIO, sink: BinaryIO | None) -> tuple[str, int, str]:
    """Stream one gzip member; return the sha256 and size of its content and the member's sha256."""
    decompressor = zlib.decompressobj(31)
    content_hash, member_hash, size = hashlib.sha256(), hashlib.sha256(), 0
    while block := member.read(_BLOCK):
        member_hash.update(block)
        if decompressor.eof:
            raise CorruptOutputError("it has data after the end of its gzip member")
        try:
            output = decompressor.decompress(block)
        except zlib.error as error:
            raise CorruptOutputError(f"its .gz is corrupt ({error})") from None
        content_hash.update(output)
        size += len(output)
        if sink is not None:
            sink.write(output)
        if decompressor.unused_data:
            raise CorruptOutputError("it has data after the end of its gzip member")
    if not decompressor.eof:
        raise CorruptOutputError("it is truncated: the gzip member does not end")
    return content_hash.hexdigest(), size, member_hash.hexdigest()


def check_chunk(folder: JobFolder, recipes: RecipeIndex, entry: ManifestEntry, out_dir: Path | None) -> int:
    """Check one chunk against its manifest entry and recipe, restoring it if `out_dir` is set."""
    recipe = recipes.get(entry.chunk_id)
    if recipe is None:
        raise CorruptOutputError("its recipe is missing")
    _require_agreement(entry, recipe)
    target = out_dir / entry.chunk_id if out_dir else None
    try:
        opened = open_member(folder, entry.chunk_id)
    except MissingObjectError:
        raise CorruptOutputError("its .gz member is missing") from None
    with opened as member:
        if target is None:
            digest, size, member_digest = decompress_member(member, None)
        else:
            digest, size, member_digest = _restore_member(member, target, recipe)
    if member_digest != recipe.compressed_sha256:
        raise CorruptOutputError(f"its .gz has sha256 {member_digest[:12]}…, the recipe says {recipe.compressed_sha256[:12]}…")
    if (digest, size) != (recipe.original_sha256, recipe.original_size):
        raise CorruptOutputError(
            f"it restores to {size} bytes with sha256 {digest[:12]}…, the recipe says "
            f"{recipe.original_size} bytes with sha256 {recipe.original_sha256[:12]}…"
        )
    return size


def _require_agreement(entry: ManifestEntry, recipe: Recipe) -> None:
    expected = entry.model_dump()
    actual = recipe.model_dump(include=set(expected))
    differing = sorted(name for name in expected if expected[name] != actual[name])
    if differing:
        raise CorruptOutputError(f"its recipe and the manifest disagree on {', '.join(differing)}")


def _restore_member(member: BinaryIO, target: Path, recipe: Recipe) -> tuple[str, int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = create_temporary(target.parent)
    try:
        with os.fdopen(descriptor, "wb") as sink:
            digest, size, member_digest = decompress_member(member, sink)
        if (digest, size, member_digest) == (recipe.original_sha256, recipe.original_size, recipe.compressed_sha256):
            os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return digest, size, member_digest


def check_job(
    job_location: str | Path, out_dir: Path | None = None, access: StorageAccess = StorageAccess()
) -> JobCheck:
    """Verify every chunk of a job folder, and restore each good one to `out_dir` when given."""
    return check_folder(open_job_location(str(job_location), access), out_dir)


def check_folder(folder: JobFolder, out_dir: Path | None = None) -> JobCheck:
    """`check_job` on a resolved folder: compression's verify check."""
    entries, problems = read_manifest(folder)
    recipes = load_recipe_index(folder)
    problems += [ItemFailure(item_id=JOURNALS_DIR, reason=f"{where}; rerun the job to rebuild it") for where in recipes.damaged]
    restored = 0
    for entry in entries:
        try:
            restored += check_chunk(folder, recipes, entry, out_dir)
        except (ColabflowError, OSError) as error:
            problems.append(ItemFailure(item_id=entry.chunk_id, reason=f"chunk {entry.chunk_id!r}: {error}"))
    return JobCheck(job_dir=folder.location, items=len(entries), bytes_checked=restored, problems=problems)
