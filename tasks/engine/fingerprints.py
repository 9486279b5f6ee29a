"""Fingerprint cache: a rerun reads and hashes only the chunks whose source says they changed.

Checkpoints are keyed by each chunk's sha256, so without a cache every run reads every chunk
before it can tell which batches are done: a rerun of a finished job costs a full read of the
source (and, for `github://`, one API request per file). `<job>/fingerprints.json` maps each
chunk's URI to the version its source reported when the chunk was last hashed
(`ItemRef.version`: a local file's size, times, inode and device; a remote object's md5 or git
blob id) and the sha256 read then. A chunk listed again with the same version takes its sha256
from the cache; any other chunk is read. `refresh_checkpoints` ignores the cache.

A local version is trusted only when the file was last changed more than `SETTLED_SECONDS` before
it was listed: a write within the file system's timestamp granularity of the listing could
otherwise leave the times unchanged (the "racy git" problem).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.engine.job_folder import JobFolder
from tasks.engine.models import ItemFingerprint, ItemRef

FINGERPRINTS_NAME = "fingerprints.json"
SETTLED_SECONDS = 2.0


class CachedFingerprint(BaseModel):
    """The source's version of a chunk and the sha256 and size read when it had that version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class FingerprintCache(BaseModel):
    """Chunk URI -> its last fingerprint, for one job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: dict[str, CachedFingerprint] = Field(default_factory=dict)


def local_version(stat: os.stat_result, listed_at: float) -> str | None:
    """A local file's version, or None while it may still be changing within timestamp granularity.

    The change time (ctime) moves on every write and cannot be set by users, so content rewritten
    with its old modification time still gets a new version.
    """
    if listed_at - max(stat.st_mtime, stat.st_ctime) < SETTLED_SECONDS:
        return None
    return f"stat:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}:{stat.st_dev}"


def reuse_fingerprints(refs: list[ItemRef], cache: FingerprintCache) -> dict[str, ItemFingerprint]:
    """Fingerprints of the chunks whose source reports the version the cache holds, by URI."""
    known: dict[str, ItemFingerprint] = {}
    for ref in refs:
        cached = cache.entries.get(ref.uri)
        if ref.version is not None and cached is not None and cached.version == ref.version:
            known[ref.uri] = ItemFingerprint(
                item_id=ref.item_id, uri=ref.uri, size=cached.size, version=ref.version, sha256=cached.sha256
            )
    return known


def cache_of(fingerprints: list[ItemFingerprint]) -> FingerprintCache:
    """The cache for this run's chunks: those whose source gave a version."""
    return FingerprintCache(entries={
        chunk.uri: CachedFingerprint(version=chunk.version, size=chunk.size, sha256=chunk.sha256)
        for chunk in fingerprints
        if chunk.version is not None
    })


def read_fingerprints(folder: JobFolder) -> FingerprintCache:
    """The job's cache; an absent or unreadable one is empty (it only saves reading)."""
    content = folder.read(FINGERPRINTS_NAME)
    if content is None:
        return FingerprintCache()
    try:
        return FingerprintCache.model_validate_json(content)
    except ValidationError:
        return FingerprintCache()


def write_fingerprints(folder: JobFolder, cache: FingerprintCache) -> None:
    """Replace the job's cache."""
    folder.write(FINGERPRINTS_NAME, cache.model_dump_json().encode())
