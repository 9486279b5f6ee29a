"""Pydantic models shared by the stages: chunks, recipes, batch results and the job report."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.codecs import CodecChoice
from tasks.errors import CorruptOutputError
from tasks.stores import StorageAccess

RECIPE_SCHEMA_VERSION = 1
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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChunkRef(_Frozen):
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


class ChunkFailure(_Frozen):
    """A chunk that could not be processed, and why."""

    chunk_id: str = Field(description="The chunk id (or the raw name when the id is invalid).")
    reason: str = Field(description="What went wrong and how to fix it.")


class Recipe(_Frozen):
    """Everything needed to check and restore one compressed chunk. Never holds a secret."""

    schema_version: int = RECIPE_SCHEMA_VERSION
    chunk_id: str
    source_uri: str
    original_sha256: str
    original_size: int = Field(ge=0)
    codec: str
    codec_version: str
    level: int = Field(ge=0, le=9)
    compressed_size: int = Field(ge=0)
    compressed_sha256: str
    ratio: float = Field(description="original_size / compressed_size.")
    seconds: float = Field(ge=0, description="Time spent compressing this chunk.")
    device: str = Field(description="'cpu' or the GPU's name.")
    created_at: datetime
    colabflow_version: str


class ManifestEntry(_Frozen):
    """One line of `<job>/manifest.jsonl`."""

    chunk_id: str
    original_sha256: str
    original_size: int
    compressed_sha256: str
    compressed_size: int


class BatchResult(_Frozen):
    """What one batch produced; this is the persisted checkpoint of the batch."""

    recipes: list[Recipe] = Field(default_factory=list)
    failures: list[ChunkFailure] = Field(default_factory=list)
    found_at_destination: list[str] = Field(
        default_factory=list,
        description="Chunk ids whose output was already at the destination, so not recompressed.",
    )


class ManifestSummary(_Frozen):
    """The manifest written at the end of a run."""

    path: str
    sha256: str
    entries: int
    missing: list[ChunkFailure] = Field(default_factory=list)


class JobReport(BaseModel):
    """What a job did. The flow returns it and the callback carries it."""

    job: str
    chunks_total: int
    compressed: int
    reused: int
    failed: list[ChunkFailure]
    bytes_in: int
    bytes_out: int
    seconds: float
    batches_total: int
    batches_reused: int
    chunks_read: int = Field(ge=0, description="Chunks read and hashed to plan this run; the rest came from the fingerprint cache.")
    manifest_sha256: str
    device: str = Field(default="cpu", description="Where the job's codec ran: 'cpu' or the GPU's name.")
    gpu_class: str = Field(default="cpu", description="The device's compute-unit class: a100, l4, t4, any or cpu.")
    compute_units: float = Field(default=0.0, ge=0, description="Estimated Colab compute units this run spent.")
    stopped_reason: str | None = Field(
        default=None, description="Why the run stopped taking batches before the end (the compute-unit quota)."
    )


class JobPlan(_Frozen):
    """The chunks of a job, fingerprinted and grouped into batches."""

    batches: list[list[ChunkFingerprint]]
    failures: list[ChunkFailure]
    chunks_total: int
    chunks_read: int = Field(ge=0, description="Chunks read and hashed; the others came from the fingerprint cache.")


class BatchSettings(_Frozen):
    """Everything a batch needs besides its chunks; part of every checkpoint key."""

    destination: str = Field(description="Destination location: an absolute local path or a gs://, gdrive:// URI.")
    results: str = Field(description="Where batch checkpoints live (a location like destination).")
    access: StorageAccess = Field(default_factory=StorageAccess, description="Credentials for remote locations.")
    job: str
    codec_choice: CodecChoice
    codec: str
    codec_version: str
    level: int
    device: str
    started_at: datetime


class BatchOutcome(_Frozen):
    """How one batch ended in this run: its result, or the error that stopped it."""

    chunk_ids: list[str]
    result: BatchResult | None = None
    error: str | None = None
    from_checkpoint: bool = False
    seconds: float = Field(default=0.0, ge=0, description="Wall time of the batch in this run, checkpoint loads included.")
