"""One chunk through a codec: in memory, streamed for large chunks, or with its batch in one call.

Chunks up to `STREAM_THRESHOLD` bytes are compressed in memory; larger ones are streamed from
the source through the codec into a temporary file and uploaded from there, so memory stays
bounded whatever the chunk's size. Every path checks that the bytes are the ones the job
planned (their sha256) and describes the member in a recipe.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import BinaryIO

from tasks.compression.codecs import Codec
from tasks.compression.models import Recipe
from tasks.compression.outputs import put_member
from tasks.engine.item_attempts import attempt_item
from tasks.engine.item_hashes import HashingReader
from tasks.engine.job_folder import JobFolder
from tasks.engine.models import ItemFailure, ItemFingerprint
from tasks.engine.sources import open_chunk, read_chunk
from tasks.errors import ChunkChangedError
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import StorageAccess, file_digests

COLABFLOW_VERSION = version("colabflow")
STREAM_THRESHOLD = 64 * 1024 * 1024


def describe_chunk(
    chunk: ItemFingerprint, codec: Codec, member_size: int, member_sha256: str, seconds: float
) -> Recipe:
    """The recipe of a chunk compressed by `codec` into a member of the given size and hash."""
    return Recipe(
        chunk_id=chunk.item_id,
        source_uri=chunk.uri,
        original_sha256=chunk.sha256,
        original_size=chunk.size,
        codec=codec.name,
        codec_version=codec.version,
        level=codec.level,
        compressed_size=member_size,
        compressed_sha256=member_sha256,
        ratio=round(chunk.size / member_size, 4),
        seconds=round(seconds, 6),
        device=codec.device_for(chunk.size),
        created_at=datetime.now(timezone.utc),
        colabflow_version=COLABFLOW_VERSION,
    )


def require_planned(chunk: ItemFingerprint, data: bytes) -> None:
    """Refuse bytes that are not the ones the job planned (the source changed meanwhile)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != chunk.sha256 or len(data) != chunk.size:
        raise _changed(chunk, actual)


def _changed(chunk: ItemFingerprint, actual_sha256: str) -> ChunkChangedError:
    return ChunkChangedError(
        f"chunk {chunk.item_id!r} changed while the job ran (sha256 {chunk.sha256[:12]}… "
        f"when listed, {actual_sha256[:12]}… now); rerun the job once the source is stable"
    )


def compress_chunk(chunk: ItemFingerprint, data: bytes, codec: Codec) -> tuple[bytes, Recipe]:
    """Compress one chunk's bytes and describe the result in a recipe."""
    require_planned(chunk, data)
    started = time.perf_counter()
    member = codec.compress(data)
    seconds = time.perf_counter() - started
    return member, describe_chunk(chunk, codec, len(member), hashlib.sha256(member).hexdigest(), seconds)


def compress_chunk_stream(chunk: ItemFingerprint, source: BinaryIO, codec: Codec, member_path: Path) -> Recipe:
    """Stream a chunk through the codec into `member_path`; memory stays bounded by the codec's block."""
    reader = HashingReader(source)
    started = time.perf_counter()
    with member_path.open("w+b") as member:
        codec.compress_stream(reader, member, chunk.size)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if reader.digest.hexdigest() != chunk.sha256 or reader.size != chunk.size:
        raise _changed(chunk, reader.digest.hexdigest())
    member_sha256, _ = file_digests(member_path)
    return describe_chunk(chunk, codec, member_path.stat().st_size, member_sha256, seconds)


def compress_and_store(chunk: ItemFingerprint, codec: Codec, folder: JobFolder, access: StorageAccess) -> Recipe:
    """Compress one chunk and put its member at the destination, in memory or streamed by its size; returns its recipe."""
    if chunk.size <= STREAM_THRESHOLD:
        member, recipe = compress_chunk(chunk, read_chunk(chunk.uri, access), codec)
        put_member(folder, chunk.item_id, member)
        return recipe
    with tempfile.TemporaryDirectory(prefix="colabflow-") as scratch:
        member_path = Path(scratch, "member.gz")
        with open_chunk(chunk.uri, access) as source:
            recipe = compress_chunk_stream(chunk, source, codec, member_path)
        put_member(folder, chunk.item_id, member_path)
    return recipe


def compress_each(
    codec: Codec, folder: JobFolder, access: StorageAccess, policy: RetryPolicy, chunks: list[ItemFingerprint]
) -> list[Recipe | ItemFailure]:
    """Compress and store chunks one after another: a core's share of a batch (tasks/engine/cores.py)."""
    return [attempt_item(chunk.item_id, lambda: compress_and_store(chunk, codec, folder, access), policy)
            for chunk in chunks]


@dataclass(frozen=True)
class Pending:
    """A chunk read and checked, waiting for the codec's one call for the whole batch."""

    chunk: ItemFingerprint
    data: bytes


def read_verified(chunk: ItemFingerprint, access: StorageAccess) -> bytes:
    """A chunk's bytes, refused if they are not the bytes that were planned."""
    data = read_chunk(chunk.uri, access)
    require_planned(chunk, data)
    return data


def compress_together(pending: list[Pending], codec: Codec) -> list[tuple[bytes, Recipe]]:
    """Compress chunks in one `compress_many` call (a GPU batch); each recipe gets a size share of its time."""
    started = time.perf_counter()
    members = codec.compress_many([item.data for item in pending])
    seconds = time.perf_counter() - started
    total = sum(item.chunk.size for item in pending) or 1
    return [
        (member, describe_chunk(item.chunk, codec, len(member), hashlib.sha256(member).hexdigest(),
                                seconds * item.chunk.size / total))
        for item, member in zip(pending, members)
    ]
