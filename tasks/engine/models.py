"""Pydantic models every job kind shares: items and their fingerprints, failures, plans, manifests."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import CorruptOutputError

Line = TypeVar("Line", bound=BaseModel)


def parse_json_lines(content: bytes, model: type[Line], where: str, kind: str, advice: str) -> list[Line]:
    """The lines of a JSON-lines file as `model`s, blank lines skipped; a bad line names `where` and its number."""
    lines: list[Line] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(model.model_validate_json(line))
        except ValidationError as error:
            raise CorruptOutputError(
                f"{where} line {number} is not a {kind} ({error.errors()[0]['msg']}); {advice}"
            ) from None
    return lines


class Frozen(BaseModel):
    """A model that cannot change once built and refuses unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ChunkRef(Frozen):
    """A chunk found in a source: its id (path relative to the source root) and where it lives."""

    chunk_id: str = Field(description="Path relative to the source root, POSIX separators.")
    uri: str = Field(description="Where the chunk's bytes are read from.")
    size: int = Field(ge=0, description="Size in bytes when listed.")
    version: str | None = Field(
        default=None,
        description="What the source says identifies this content without reading it (a local file's "
        "size, times and inode; a remote object's md5 or git blob id); None when it cannot say.",
    )


class ChunkFingerprint(ChunkRef):
    """A chunk whose content has been hashed: the sha256 is what checkpoints are keyed by."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the chunk's bytes.")


class ChunkFailure(Frozen):
    """A chunk that could not be processed, and why."""

    chunk_id: str = Field(description="The chunk id (or the raw name when the id is invalid).")
    reason: str = Field(description="What went wrong and how to fix it.")


class ManifestSummary(Frozen):
    """The manifest written at the end of a run."""

    path: str
    sha256: str
    entries: int
    missing: list[ChunkFailure] = Field(default_factory=list)


class JobPlan(Frozen):
    """The chunks of a job, fingerprinted and grouped into batches."""

    batches: list[list[ChunkFingerprint]]
    failures: list[ChunkFailure]
    chunks_total: int
    chunks_read: int = Field(ge=0, description="Chunks read and hashed; the others came from the fingerprint cache.")
