"""Restore and verify a job folder: every chunk decompressed, sized and hashed against its recipe.

Reads only what the job folder holds (manifest, recipes, members), never the source, and
never unpickles anything. A restored file appears under its final name only after its sha256
matched.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ValidationError

from tasks.chunk_ids import validate_chunk_id
from tasks.destinations import CHUNK_SUFFIX, MANIFEST_NAME, LocalDestination, create_temporary
from tasks.errors import ColabflowError, CorruptOutputError
from tasks.models import ChunkFailure, ManifestEntry, Recipe

_BLOCK = 1024 * 1024


class JobCheck(BaseModel):
    """The outcome of verifying (or restoring) a job folder."""

    job_dir: str
    chunks: int
    bytes_restored: int
    problems: list[ChunkFailure]


def read_manifest(job_dir: Path) -> tuple[list[ManifestEntry], list[ChunkFailure]]:
    """Parse `manifest.jsonl`; each unreadable line is a problem, not a crash."""
    path = job_dir / MANIFEST_NAME
    if not path.is_file():
        raise CorruptOutputError(
            f"{str(path)!r} does not exist; give a job folder (<destination>/<job>) of a finished run"
        )
    entries: list[ManifestEntry] = []
    problems: list[ChunkFailure] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            entry = ManifestEntry.model_validate_json(line)
            validate_chunk_id(entry.chunk_id)
        except (ValidationError, ColabflowError) as error:
            problems.append(ChunkFailure(chunk_id=f"manifest line {number}", reason=f"unusable: {error}"))
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


def check_chunk(destination: LocalDestination, job: str, entry: ManifestEntry, out_dir: Path | None) -> int:
    """Check one chunk against its manifest entry and recipe, restoring it if `out_dir` is set."""
    recipe = destination.read_recipe(job, entry.chunk_id)
    if recipe is None:
        raise CorruptOutputError("its recipe is missing")
    _require_agreement(entry, recipe)
    path = destination.chunk_path(job, entry.chunk_id, CHUNK_SUFFIX)
    if not path.is_file():
        raise CorruptOutputError(f"its member {str(path)!r} is missing")
    target = out_dir / entry.chunk_id if out_dir else None
    with path.open("rb") as member:
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


def check_job(job_dir: Path, out_dir: Path | None = None) -> JobCheck:
    """Verify every chunk of a job folder, and restore each good one to `out_dir` when given."""
    entries, problems = read_manifest(job_dir)
    destination = LocalDestination(job_dir.parent)
    restored = 0
    for entry in entries:
        try:
            restored += check_chunk(destination, job_dir.name, entry, out_dir)
        except (ColabflowError, OSError) as error:
            problems.append(ChunkFailure(chunk_id=entry.chunk_id, reason=f"chunk {entry.chunk_id!r}: {error}"))
    return JobCheck(job_dir=str(job_dir), chunks=len(entries), bytes_restored=restored, problems=problems)
